// Package mirrortest starts real mirror servers for tests: nginx serving
// a directory, and MinIO serving S3. Each runs on a free loopback port
// with all its files in the test's temp directory, and is killed when the
// test ends.
//
// A server whose program is missing skips the test with a message saying
// how to get it (`make tools` installs both), except under CI=true, where
// it fails the test: CI must never pass without running them.
//
// This package is for tests only; nothing outside _test.go files may
// import it.
package mirrortest

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/minio/minio-go/v7/pkg/credentials"
)

// startTimeout is how long a server may take to answer after it starts.
// MinIO takes about a second here; a busy 2-core CI machine, longer.
const startTimeout = 30 * time.Second

// Server is a running mirror server.
type Server struct {
	// URL is where it serves: http://127.0.0.1:PORT/ for nginx,
	// http://127.0.0.1:PORT for MinIO (an S3 endpoint, no path).
	URL string
	// Dir is the directory it serves or stores objects in.
	Dir string

	cmd    *exec.Cmd
	log    string
	exited chan struct{} // closed when the process has exited and been reaped
}

// Kill stops the server at once, as a crash would: open connections are
// reset and new ones refused. It returns when the process is gone, is
// safe to call more than once, and cleanup calls it anyway.
func (s *Server) Kill() {
	s.cmd.Process.Kill() // an error only says it has exited already
	<-s.exited
}

// Log returns what the server has written to its log so far.
func (s *Server) Log() string {
	b, _ := os.ReadFile(s.log)
	return string(b)
}

// lookTool finds a program a test needs, or skips (fails under CI=true)
// with a message.
func lookTool(t testing.TB, name, how string, also ...string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, p := range also {
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s not found (%s; `make tools` installs it)", name, how)
	}
	t.Skipf("%s not found: %s, or run `make tools`", name, how)
	return ""
}

// freePort returns a loopback port nothing listens on now. Another
// process may take it before the server binds it; callers retry then.
func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// start runs cmd with its output in logPath and waits until ready
// answers true. If the process exits first, or is not ready in time, it
// is killed and the error quotes the end of its log.
func start(t testing.TB, cmd *exec.Cmd, logPath string, ready func() bool) (*Server, error) {
	t.Helper()
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = serverProcAttr()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", cmd.Path, err)
	}
	s := &Server{cmd: cmd, log: logPath, exited: make(chan struct{})}
	go func() {
		cmd.Wait()
		close(s.exited)
	}()
	deadline := time.Now().Add(startTimeout)
	for !ready() {
		select {
		case <-s.exited:
			return nil, fmt.Errorf("%s exited before it was ready (%v):\n%s", filepath.Base(cmd.Path), cmd.ProcessState, tail(s.Log()))
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.Kill()
			return nil, fmt.Errorf("%s not ready after %v:\n%s", filepath.Base(cmd.Path), startTimeout, tail(s.Log()))
		}
	}
	t.Cleanup(s.Kill)
	return s, nil
}

func tail(s string) string {
	if len(s) > 2000 {
		s = "…" + s[len(s)-2000:]
	}
	return s
}

// answers reports whether GET url gets an HTTP response with one of the
// codes.
func answers(url string, codes ...int) bool {
	c := http.Client{Timeout: time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return false
	}
	resp.Body.Close()
	for _, code := range codes {
		if resp.StatusCode == code {
			return true
		}
	}
	return false
}

// StartNginx starts a real nginx (Debian package nginx) that serves dir
// at the returned server's URL, http://127.0.0.1:PORT/, the way a
// production mirror would: sendfile, keep-alive, no access log. It runs as
// one process (master_process off), so Kill leaves no workers behind.
func StartNginx(t testing.TB, dir string) *Server {
	t.Helper()
	bin := lookTool(t, "nginx", "install the Debian package nginx", "/usr/sbin/nginx")
	abs, err := filepath.Abs(dir)
	if err != nil {
		t.Fatal(err)
	}
	var lastErr error
	for range 3 { // a port taken between freePort and bind: try another
		prefix := t.TempDir()
		port := freePort(t)
		conf := filepath.Join(prefix, "nginx.conf")
		if err := os.WriteFile(conf, nginxConf(prefix, abs, port), 0o644); err != nil {
			t.Fatal(err)
		}
		// -e: the error log before the config is read; nginx's default
		// (/var/log/nginx) is not writable when not root.
		cmd := exec.Command(bin, "-p", prefix, "-c", conf, "-e", filepath.Join(prefix, "error.log"))
		url := fmt.Sprintf("http://127.0.0.1:%d/", port)
		s, err := start(t, cmd, filepath.Join(prefix, "nginx.out"), func() bool { return answers(url, 200, 403, 404) })
		if err == nil {
			s.URL, s.Dir = url, abs
			return s
		}
		lastErr = fmt.Errorf("%w\nerror.log:\n%s", err, readTail(filepath.Join(prefix, "error.log")))
		if !strings.Contains(lastErr.Error(), "Address already in use") {
			break
		}
	}
	t.Fatalf("nginx: %v", lastErr)
	return nil
}

func readTail(path string) string {
	b, _ := os.ReadFile(path)
	return tail(string(b))
}

func nginxConf(prefix, root string, port int) []byte {
	var b bytes.Buffer
	// As root, nginx would switch its worker to nobody, who cannot enter
	// a test's temp directory (0700); one process run as root needs no
	// user. Not root, nginx ignores user with a warning.
	if os.Geteuid() == 0 {
		b.WriteString("user root;\n")
	}
	fmt.Fprintf(&b, `daemon off;
master_process off;
worker_processes 1;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_timeout 60s;
    keepalive_requests 100000;
    client_body_temp_path %[1]s/client_body;
    proxy_temp_path %[1]s/proxy;
    fastcgi_temp_path %[1]s/fastcgi;
    uwsgi_temp_path %[1]s/uwsgi;
    scgi_temp_path %[1]s/scgi;
    types { application/json json; }
    default_type application/octet-stream;
    server {
        listen 127.0.0.1:%[2]d;
        root %[3]s;
        location / { }
    }
}
`, prefix, port, strconv.Quote(root))
	return b.Bytes()
}

// MinIORootUser and MinIORootPassword are the credentials of every MinIO
// StartMinIO starts.
const (
	MinIORootUser     = "voxsync-test"
	MinIORootPassword = "voxsync-test-secret"
)

// StartMinIO starts a real MinIO server storing objects in a temp
// directory, waits until /minio/health/live and S3 requests answer, and returns its S3
// endpoint (http://127.0.0.1:PORT) and root credentials. It is killed
// when the test ends; StartMinIOServer also returns it, to kill sooner.
func StartMinIO(t testing.TB) (endpoint, accessKey, secretKey string) {
	t.Helper()
	s := StartMinIOServer(t)
	return s.URL, MinIORootUser, MinIORootPassword
}

// MinIOPath is where the MinIO server binary is looked for: on PATH, then
// where `go install` puts it.
func MinIOPath() []string {
	var dirs []string
	if gobin := os.Getenv("GOBIN"); gobin != "" {
		dirs = append(dirs, gobin)
	}
	if gopath := os.Getenv("GOPATH"); gopath != "" {
		for _, p := range filepath.SplitList(gopath) {
			dirs = append(dirs, filepath.Join(p, "bin"))
		}
	} else if home, err := os.UserHomeDir(); err == nil {
		dirs = append(dirs, filepath.Join(home, "go", "bin"))
	}
	var out []string
	for _, d := range dirs {
		out = append(out, filepath.Join(d, "minio"))
	}
	return out
}

// StartMinIOServer is StartMinIO returning the server.
func StartMinIOServer(t testing.TB) *Server {
	t.Helper()
	for _, p := range MinIOPath() {
		waitForBuild(t, p)
	}
	bin := lookTool(t, "minio", "build it with `go install github.com/minio/minio@"+MinIOVersion+"`", MinIOPath()...)
	var lastErr error
	for range 3 {
		dir := t.TempDir()
		port, console := freePort(t), freePort(t)
		cmd := exec.Command(bin, "server", filepath.Join(dir, "data"),
			"--address", fmt.Sprintf("127.0.0.1:%d", port),
			"--console-address", fmt.Sprintf("127.0.0.1:%d", console), "--quiet")
		cmd.Env = append(os.Environ(),
			"MINIO_ROOT_USER="+MinIORootUser, "MINIO_ROOT_PASSWORD="+MinIORootPassword,
			"MINIO_BROWSER=off",           // no web console: nothing here uses it
			"MINIO_UPDATE=off",            // never look for a newer release
			"MINIO_CALLHOME_ENABLE=off",   // nor report anywhere
			"HOME="+dir,                   // its ~/.minio certs dir
			"MINIO_API_REQUESTS_MAX=1000", // not sized from the machine's memory
		)
		url := fmt.Sprintf("http://127.0.0.1:%d", port)
		// Live comes before the object layer is up, when S3 requests
		// still get 503 "Server not initialized": wait for both. An
		// anonymous ListBuckets is refused (403) once it is up.
		ready := func() bool { return answers(url+"/minio/health/live", 200) && answers(url+"/", 403) }
		s, err := start(t, cmd, filepath.Join(dir, "minio.log"), ready)
		if err == nil {
			s.URL, s.Dir = url, filepath.Join(dir, "data")
			return s
		}
		lastErr = err
		if !strings.Contains(err.Error(), "address already in use") && !strings.Contains(err.Error(), "port") {
			break
		}
	}
	t.Fatalf("minio: %v", lastErr)
	return nil
}

// MinIOVersion is the MinIO server `make tools` builds: the newest on the
// Go module proxy when this was written, pinned so that a new release
// cannot break the build.
const MinIOVersion = "v0.0.0-20260212201848-7aac2a2c5b7c"

// MinIOReadOnlyKey returns temporary credentials from the MinIO at
// endpoint (MinIO's STS AssumeRole, with a session policy narrower than
// the root user's) that may list and read bucket and do nothing else: an
// operator's key without write rights.
func MinIOReadOnlyKey(t testing.TB, endpoint, bucket string) (accessKey, secretKey, sessionToken string) {
	t.Helper()
	policy := fmt.Sprintf(`{"Version":"2012-10-17","Statement":[{"Effect":"Allow",`+
		`"Action":["s3:GetObject","s3:ListBucket","s3:GetBucketLocation"],`+
		`"Resource":["arn:aws:s3:::%[1]s","arn:aws:s3:::%[1]s/*"]}]}`, bucket)
	creds, err := credentials.NewSTSAssumeRole(endpoint, credentials.STSAssumeRoleOptions{
		AccessKey: MinIORootUser, SecretKey: MinIORootPassword, Policy: policy,
	})
	if err != nil {
		t.Fatal(err)
	}
	v, err := creds.GetWithContext(nil)
	if err != nil {
		t.Fatalf("MinIO STS AssumeRole: %v", err)
	}
	return v.AccessKeyID, v.SecretAccessKey, v.SessionToken
}

// buildWait caps how long a test waits for the MinIO build `make tools`
// started: 2-3.5 minutes on a busy 2-core machine, within the 8-minute
// test timeout of `make test`.
const buildWait = 6 * time.Minute

// waitForBuild waits while a MinIO build that `make tools` started in the
// background holds bin's lock file (bin.build.lock): the build runs while
// other packages' tests do, and the binary is not to be run until it is
// complete.
func waitForBuild(t testing.TB, bin string) {
	t.Helper()
	f, err := os.Open(bin + ".build.lock")
	if err != nil {
		return // no build was ever started here
	}
	defer f.Close()
	logPath := bin + ".build.log"
	start := time.Now()
	for said := false; ; said = true {
		if syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB) == nil {
			syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
			log, _ := os.ReadFile(logPath)
			// The lock file exists a moment before the build takes the
			// lock: free, with neither a binary nor an outcome logged,
			// means not started yet.
			if _, err := os.Stat(bin); err == nil || bytes.Contains(log, []byte("minio build: ")) || time.Since(start) > 5*time.Second {
				if err != nil {
					t.Logf("the MinIO build that make tools started did not leave %s; its log %s ends:\n%s", bin, logPath, tail(string(log)))
				}
				return
			}
		} else if !said {
			t.Logf("waiting for the MinIO build that make tools started (log: %s)", logPath)
		}
		if time.Since(start) > buildWait {
			t.Fatalf("the MinIO build that make tools started still runs after %v (log: %s)", buildWait, logPath)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
