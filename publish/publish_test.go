package publish

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/voxsync/voxsync/internal/mirrortest"
	"github.com/voxsync/voxsync/manifest"
	"github.com/voxsync/voxsync/packs"
	"github.com/voxsync/voxsync/resources"
)

// randomBytes returns n bytes that are the same for the same seed.
func randomBytes(n int, seed byte) []byte {
	b := make([]byte, n)
	rand.NewChaCha8([32]byte{seed}).Read(b)
	return b
}

// writePack writes files (slash path under assets/ → content) as a pack
// in a new directory.
func writePack(t testing.TB, files map[string][]byte) string {
	t.Helper()
	dir := t.TempDir()
	for rel, data := range files {
		p := filepath.Join(dir, "assets", filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// packV1 is a pack with small files (two of them identical), an empty
// one, a 3 MiB file of several chunks, and a second large file that
// shares most of its chunks with the first (16 bytes changed in the
// middle).
func packV1() map[string][]byte {
	big := randomBytes(3<<20+777, 1)
	edited := bytes.Clone(big)
	copy(edited[3<<19:], "sixteen bytes!!!")
	return map[string][]byte{
		"test/texture/stone.png": []byte("\x89PNG stone"),
		"test/texture/dirt.png":  []byte("\x89PNG dirt"),
		"test/texture/copy.png":  []byte("\x89PNG stone"),
		"test/sound/empty.ogg":   {},
		"test/model/mid.obj":     randomBytes(600<<10, 2), // under ChunkedMin: one object
		"test/model/edge.obj":    randomBytes(packs.ChunkedMin, 5),
		"test/model/big.b3d":     big,
		"test/model/edited.b3d":  edited,
	}
}

// packV2 is the next version of packV1: one small file changed, one
// added, the big file grown at its end.
func packV2() map[string][]byte {
	files := packV1()
	files["test/texture/dirt.png"] = []byte("\x89PNG dirt, redrawn")
	files["test/texture/sand.png"] = []byte("\x89PNG sand")
	files["test/model/big.b3d"] = append(bytes.Clone(files["test/model/big.b3d"]), randomBytes(200<<10, 3)...)
	return files
}

func loadPack(t testing.TB, dir string) *packs.View {
	t.Helper()
	v, err := packs.Load(context.Background(), packs.Options{Dirs: []string{dir}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(v.Problems) > 0 {
		t.Fatalf("pack problems: %v", v.Problems)
	}
	t.Cleanup(v.Close)
	return v
}

func publishOK(t testing.TB, v *packs.View, tg Target, opts Options) Summary {
	t.Helper()
	sum, err := Publish(context.Background(), v, tg, opts)
	if err != nil {
		t.Fatalf("publish to %s: %v", tg, err)
	}
	return sum
}

// expected is what a view needs at a base: object names with their sizes,
// and the manifests of large resources.
func expected(t testing.TB, v *packs.View) (objects map[string]int64, manifests map[string]*packs.Entry) {
	t.Helper()
	objects, manifests = map[string]int64{}, map[string]*packs.Entry{}
	for _, e := range v.Entries() {
		if e.Size <= packs.ChunkedMin {
			objects[ObjectPath(e.Hash)] = e.Size
			continue
		}
		m, err := e.Manifest(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range m.Chunks {
			objects[ObjectPath(c.Hash)] = int64(c.Length)
		}
		manifests[ManifestPath(e.Hash)] = e
	}
	return objects, manifests
}

// checkOverHTTP fetches everything v needs from base (a mirror's URL,
// ending in "/") with plain GETs, as a client would, and checks that each
// object hashes to its name and each manifest is the one the server cuts.
func checkOverHTTP(t testing.TB, base string, v *packs.View) {
	t.Helper()
	get := func(name string) []byte {
		resp, err := http.Get(base + name)
		if err != nil {
			t.Fatalf("GET %s: %v", name, err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("GET %s%s: %s %v %.200s", base, name, resp.Status, err, b)
		}
		return b
	}
	objects, manifests := expected(t, v)
	for name, size := range objects {
		b := get(name)
		if sum := resources.Sum(b); int64(len(b)) != size || ObjectPath(sum) != name {
			t.Errorf("GET %s: %d bytes hashing to %s, want %d bytes hashing to its name", name, len(b), sum.Short(), size)
		}
	}
	for name, e := range manifests {
		whole, m, err := manifest.ParseFile(get(name))
		if err != nil {
			t.Fatalf("GET %s: %v", name, err)
		}
		want, _ := e.Manifest(context.Background())
		if whole != e.Hash || m.Digest() != want.Digest() {
			t.Errorf("manifest %s is not %s's manifest", name, e.Path)
		}
	}
	if got := string(get(LayoutFile)); got != string(layoutJSON) {
		t.Errorf("%s: %q, want %q", LayoutFile, got, layoutJSON)
	}
}

// minioBase starts MinIO, creates a bucket readable by anyone under
// prefix, and returns the S3 base and the base's plain HTTP URL.
func minioBase(t testing.TB, prefix string) (*S3, string) {
	t.Helper()
	endpoint, key, secret := mirrortest.StartMinIO(t)
	s3 := newS3(t, endpoint, "mirror", prefix, key, secret, "")
	if err := s3.EnsureBucket(context.Background(), true); err != nil {
		t.Fatal(err)
	}
	return s3, endpoint + "/mirror/" + prefix
}

func newS3(t testing.TB, endpoint, bucket, prefix, key, secret, token string) *S3 {
	t.Helper()
	s3, err := NewS3(S3Options{Endpoint: endpoint, Bucket: bucket, Prefix: prefix, AccessKey: key, SecretKey: secret, SessionToken: token})
	if err != nil {
		t.Fatal(err)
	}
	return s3
}

// The whole life of a mirror, against each kind of base and the real
// server in front of it: publish; every object, manifest and the layout
// file can be fetched with plain HTTP GETs and checks out; publishing
// again uploads nothing; the next version of the pack uploads only what
// is new.
func TestPublishToRealMirrors(t *testing.T) {
	bases := []struct {
		name string
		open func(t *testing.T) (Target, string)
	}{
		{"MinIO with public read", func(t *testing.T) (Target, string) { return minioBase(t, "servers/alpha/") }},
		{"directory served by nginx", func(t *testing.T) (Target, string) {
			dir := filepath.Join(t.TempDir(), "mirror")
			return NewDir(dir), mirrortest.StartNginx(t, filepath.Dir(dir)).URL + "mirror/"
		}},
	}
	for _, base := range bases {
		t.Run(base.name, func(t *testing.T) {
			tg, url := base.open(t)
			v1 := loadPack(t, writePack(t, packV1()))
			objects, manifests := expected(t, v1)
			if len(manifests) != 2 || len(objects) < 8 {
				t.Fatalf("fixture: %d objects, %d manifests; want large files of several chunks", len(objects), len(manifests))
			}

			first := publishOK(t, v1, tg, Options{})
			var objBytes int64
			for _, n := range objects {
				objBytes += n
			}
			if first.Objects != len(objects) || first.Manifests != 2 || first.Uploaded != len(objects)+2 || first.Skipped != 0 {
				t.Errorf("first publish: %+v; want %d objects and 2 manifests, all uploaded", first, len(objects))
			}
			if first.BytesUploaded < objBytes || first.BytesUploaded > objBytes+2*(49+36*100) {
				t.Errorf("first publish uploaded %d bytes; the objects are %d, shared chunks once", first.BytesUploaded, objBytes)
			}
			checkOverHTTP(t, url, v1)

			again := publishOK(t, loadPack(t, writePack(t, packV1())), tg, Options{})
			if again.Uploaded != 0 || again.BytesUploaded != 0 || again.Skipped != len(objects)+2 {
				t.Errorf("publishing the same content again: %+v; want nothing uploaded", again)
			}

			v2 := loadPack(t, writePack(t, packV2()))
			objects2, manifests2 := expected(t, v2)
			newNames := 0
			for name := range objects2 {
				if _, ok := objects[name]; !ok {
					newNames++
				}
			}
			for name := range manifests2 {
				if _, ok := manifests[name]; !ok {
					newNames++
				}
			}
			next := publishOK(t, v2, tg, Options{})
			if next.Uploaded != newNames || next.Uploaded+next.Skipped != len(objects2)+len(manifests2) {
				t.Errorf("next version: %+v; want only its %d new objects and manifests uploaded", next, newNames)
			}
			if newNames > 6 {
				t.Errorf("the next version has %d new objects: the large file's chunks are not shared", newNames)
			}
			checkOverHTTP(t, url, v2)
			checkOverHTTP(t, url, v1) // the old version's content stays
		})
	}
}

// A manifest is trusted only with all its chunks: a chunk lost from the
// base is uploaded again by the next publish, and the resource's bytes are
// whole again.
func TestPublishRestoresAMissingChunk(t *testing.T) {
	dir := t.TempDir()
	tg := NewDir(dir)
	v := loadPack(t, writePack(t, packV1()))
	publishOK(t, v, tg, Options{})
	e, _ := v.Lookup(packs.Loc{Type: resources.TypeModel, Ref: must(resources.ParseRef("test:big.b3d"))})
	m, _ := e.Manifest(context.Background())
	lost := ObjectPath(m.Chunks[len(m.Chunks)/2].Hash)
	if err := os.Remove(filepath.Join(dir, lost)); err != nil {
		t.Fatal(err)
	}
	// The chunk, and written again after it, the manifest of every
	// resource that has it (both large files share most chunks).
	want := 1
	_, manifests := expected(t, v)
	for _, e := range manifests {
		m, _ := e.Manifest(context.Background())
		for _, c := range m.Chunks {
			if ObjectPath(c.Hash) == lost {
				want++
				break
			}
		}
	}
	sum := publishOK(t, v, tg, Options{})
	if sum.Uploaded != want {
		t.Errorf("after losing %s: %+v; want it and %d manifests uploaded", lost, sum, want-1)
	}
	if _, err := os.Stat(filepath.Join(dir, lost)); err != nil {
		t.Errorf("lost chunk not restored: %v", err)
	}
}

// A publish killed part-way leaves temp files and no layout file. The
// next publish ignores temp files another publish may be writing now,
// removes those old enough to be leftovers, replaces a file of the wrong
// size, and completes the base.
func TestDirPublishAfterAnInterruptedOne(t *testing.T) {
	dir := t.TempDir()
	v := loadPack(t, writePack(t, packV1()))
	objects, _ := expected(t, v)
	var some string
	for name := range objects {
		if objects[name] > 100 {
			some = name
			break
		}
	}
	// What a publish killed while writing leaves.
	shard := filepath.Join(dir, filepath.Dir(some))
	os.MkdirAll(shard, 0o755)
	stale := filepath.Join(shard, tempPrefix+"111")
	fresh := filepath.Join(shard, tempPrefix+"222")
	os.WriteFile(stale, []byte("half of"), 0o600)
	os.WriteFile(fresh, []byte("half of"), 0o600)
	old := time.Now().Add(-2 * staleTemp)
	os.Chtimes(stale, old, old)
	// A file of the wrong size under a content name: not ours, or damaged.
	os.WriteFile(filepath.Join(dir, some), []byte("truncated"), 0o644)

	sum := publishOK(t, v, NewDir(dir), Options{})
	if sum.Skipped != 0 {
		t.Errorf("%+v: skipped a file of the wrong size", sum)
	}
	if _, err := os.Stat(stale); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stale temp file still there: %v", err)
	}
	if _, err := os.Stat(fresh); err != nil {
		t.Errorf("a temp file another publish may be writing was removed: %v", err)
	}
	checkDir(t, dir, v)
	// Nothing but content and the layout file; no temp files of ours.
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		rel, _ := filepath.Rel(dir, p)
		rel = filepath.ToSlash(rel)
		if !d.IsDir() && rel != LayoutFile && !isContentName(rel) && p != fresh {
			t.Errorf("stray file %s", rel)
		}
		if !d.IsDir() && p != fresh {
			if fi, _ := d.Info(); fi.Mode().Perm() != 0o644 {
				t.Errorf("%s has mode %v; a web server must be able to read it", rel, fi.Mode())
			}
		}
		return nil
	})
}

// checkDir checks a directory base the way checkOverHTTP checks a
// served one.
func checkDir(t testing.TB, dir string, v *packs.View) {
	t.Helper()
	objects, manifests := expected(t, v)
	for name, size := range objects {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil || int64(len(b)) != size || ObjectPath(resources.Sum(b)) != name {
			t.Errorf("%s: %d bytes, %v", name, len(b), err)
		}
	}
	for name := range manifests {
		if _, _, err := manifest.ParseFile(must(os.ReadFile(filepath.Join(dir, name)))); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	if b, err := os.ReadFile(filepath.Join(dir, LayoutFile)); err != nil || !bytes.Equal(b, layoutJSON) {
		t.Errorf("%s: %q %v", LayoutFile, b, err)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// Bytes that no longer match the hash the pack was loaded with are never
// stored: the publish fails, says why, and writes no layout file.
func TestPublishRefusesAFileChangedSinceLoad(t *testing.T) {
	pack := writePack(t, packV1())
	v := loadPack(t, pack)
	// Rewritten in place with the same size and mtime, so only the bytes
	// tell.
	p := filepath.Join(pack, "assets", "test", "model", "mid.obj")
	fi, _ := os.Stat(p)
	os.WriteFile(p, randomBytes(int(fi.Size()), 9), 0o644)
	os.Chtimes(p, fi.ModTime(), fi.ModTime())

	dir := t.TempDir()
	_, err := Publish(context.Background(), v, NewDir(dir), Options{})
	if !errors.Is(err, packs.ErrChanged) || !strings.Contains(err.Error(), "mid.obj") {
		t.Fatalf("publish of a changed file: %v; want ErrChanged naming the file", err)
	}
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		rel, _ := filepath.Rel(dir, p)
		if b, err := os.ReadFile(p); err == nil && isContentName(filepath.ToSlash(rel)) && strings.HasPrefix(rel, "objects") {
			if ObjectPath(resources.Sum(b)) != filepath.ToSlash(rel) {
				t.Errorf("%s stored with bytes of another hash", rel)
			}
		}
		if filepath.Base(p) == LayoutFile {
			t.Errorf("layout file written by a failed publish")
		}
		return nil
	})
}

// A dry run counts what would be uploaded and changes nothing.
func TestDryRunChangesNothing(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "mirror")
	v := loadPack(t, writePack(t, packV1()))
	objects, manifests := expected(t, v)
	sum := publishOK(t, v, NewDir(dir), Options{DryRun: true})
	if !sum.DryRun || sum.Uploaded != len(objects)+len(manifests) {
		t.Errorf("dry run: %+v; want %d to upload", sum, len(objects)+len(manifests))
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("dry run created the base: %v", err)
	}
}

// Credentials that may read but not write — real MinIO temporary
// credentials with a read-only policy — fail the publish at the first
// upload, saying which permission on what is missing. Wrong credentials
// fail at the bucket check, saying which variable to fix; an endpoint
// that is down, that it cannot be reached.
func TestS3ErrorsSayWhatToDo(t *testing.T) {
	srv := mirrortest.StartMinIOServer(t)
	endpoint, key, secret := srv.URL, mirrortest.MinIORootUser, mirrortest.MinIORootPassword
	root := newS3(t, endpoint, "locked", "p/", key, secret, "")
	if err := root.EnsureBucket(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	roKey, roSecret, roToken := mirrortest.MinIOReadOnlyKey(t, endpoint, "locked")
	v := loadPack(t, writePack(t, packV1()))

	tests := []struct {
		name string
		tg   *S3
		want []string
	}{
		{"read-only key", newS3(t, endpoint, "locked", "p/", roKey, roSecret, roToken),
			[]string{"upload objects/", "Access Denied", "may not s3:PutObject on arn:aws:s3:::locked/p/*"}},
		{"wrong secret", newS3(t, endpoint, "locked", "p/", key, "not-the-secret", ""),
			[]string{"AWS_SECRET_ACCESS_KEY does not match"}},
		{"unknown key", newS3(t, endpoint, "locked", "p/", "nobody", "not-the-secret", ""),
			[]string{"does not know the access key"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.tg.EnsureBucket(context.Background(), false)
			if err == nil {
				_, err = Publish(context.Background(), v, tc.tg, Options{})
			}
			if err == nil {
				t.Fatal("publish succeeded")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}

	srv.Kill()
	start := time.Now()
	err := root.EnsureBucket(context.Background(), false)
	if err == nil || !strings.Contains(err.Error(), "cannot reach the S3 endpoint "+endpoint) {
		t.Errorf("endpoint down: %v", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("took %v to report an endpoint that is down", d)
	}
}

// The public-read grant is added to a bucket's policy, keeping what other
// prefixes were granted, and only once.
func TestPublicReadKeepsOtherGrants(t *testing.T) {
	endpoint, key, secret := mirrortest.StartMinIO(t)
	ctx := context.Background()
	a := newS3(t, endpoint, "shared", "a/", key, secret, "")
	b := newS3(t, endpoint, "shared", "b/", key, secret, "")
	for _, s := range []*S3{a, b, a} {
		if err := s.EnsureBucket(ctx, true); err != nil {
			t.Fatal(err)
		}
	}
	c, _ := minio.New(strings.TrimPrefix(endpoint, "http://"), &minio.Options{Creds: credentials.NewStaticV4(key, secret, "")})
	policy, err := c.GetBucketPolicy(ctx, "shared")
	if err != nil {
		t.Fatal(err)
	}
	for _, arn := range []string{"arn:aws:s3:::shared/a/*", "arn:aws:s3:::shared/b/*"} {
		if n := strings.Count(policy, arn); n != 1 {
			t.Errorf("policy grants %s %d times, want once:\n%s", arn, n, policy)
		}
	}
	// And it works: anyone may GET under a/, nobody may under c/.
	for _, tc := range []struct {
		key  string
		code int
	}{{"a/x", 200}, {"c/x", 403}} {
		if _, err := c.PutObject(ctx, "shared", tc.key, strings.NewReader("x"), 1, minio.PutObjectOptions{}); err != nil {
			t.Fatal(err)
		}
		resp, err := http.Get(endpoint + "/shared/" + tc.key)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.code {
			t.Errorf("anonymous GET %s: %s, want %d", tc.key, resp.Status, tc.code)
		}
	}
}

func TestWithPublicRead(t *testing.T) {
	const arn = "arn:aws:s3:::b/p/*"
	tests := []struct {
		name        string
		old         string
		wantChanged bool
		wantErr     bool
		wantKeep    string
	}{
		{"no policy", "", true, false, ""},
		{"another prefix's grant", `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":["*"]},"Action":["s3:GetObject"],"Resource":["arn:aws:s3:::b/q/*"]}]}`, true, false, "arn:aws:s3:::b/q/*"},
		{"already granted, as MinIO writes it", `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":["*"]},"Action":["s3:GetObject"],"Resource":["arn:aws:s3:::b/p/*"]}]}`, false, false, ""},
		{"already granted, as strings", `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::b/p/*"}]}`, false, false, ""},
		{"a deny is not a grant", `{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::b/p/*"}]}`, true, false, "Deny"},
		{"a conditional grant is not the grant", `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::b/p/*","Condition":{"IpAddress":{"aws:SourceIp":"10.0.0.0/8"}}}]}`, true, false, "aws:SourceIp"},
		{"not JSON", `{`, false, true, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, changed, err := withPublicRead(tc.old, arn)
			if (err != nil) != tc.wantErr || changed != tc.wantChanged {
				t.Fatalf("withPublicRead = changed %v, %v; want changed %v, error %v", changed, err, tc.wantChanged, tc.wantErr)
			}
			if err != nil {
				return
			}
			if !strings.Contains(got, arn) || !strings.Contains(got, tc.wantKeep) {
				t.Errorf("policy %s lacks %s or %s", got, arn, tc.wantKeep)
			}
			if again, changed, _ := withPublicRead(got, arn); changed || again != got {
				t.Errorf("granting twice changed the policy again")
			}
		})
	}
}

func TestParseS3URL(t *testing.T) {
	tests := []struct {
		in, bucket, prefix string
		isS3, ok           bool
	}{
		{"s3://bkt", "bkt", "", true, true},
		{"s3://bkt/", "bkt", "", true, true},
		{"s3://bkt/p", "bkt", "p/", true, true},
		{"s3://bkt/p/q/", "bkt", "p/q/", true, true},
		{"s3://b/p", "", "", true, false},
		{"s3://Bucket/p", "", "", true, false},
		{"s3://", "", "", true, false},
		{"s3:///p", "", "", true, false},
		{"s3://bkt//p", "", "", true, false},
		{"/srv/mirror", "", "", false, true},
		{"https://b/p", "", "", false, true},
	}
	for _, tc := range tests {
		bucket, prefix, isS3, err := ParseS3URL(tc.in)
		if bucket != tc.bucket || prefix != tc.prefix || isS3 != tc.isS3 || (err == nil) != tc.ok {
			t.Errorf("ParseS3URL(%q) = %q, %q, %v, %v; want %q, %q, %v, ok %v", tc.in, bucket, prefix, isS3, err, tc.bucket, tc.prefix, tc.isS3, tc.ok)
		}
	}
}

func TestContentNames(t *testing.T) {
	h := resources.Sum([]byte("x"))
	hex := h.String()
	if got, want := ObjectPath(h), "objects/"+hex[:2]+"/"+hex; got != want {
		t.Errorf("ObjectPath = %s, want %s", got, want)
	}
	if got, want := ManifestPath(h), "manifests/"+hex[:2]+"/"+hex; got != want {
		t.Errorf("ManifestPath = %s, want %s", got, want)
	}
	tests := []struct {
		name string
		ok   bool
	}{
		{ObjectPath(h), true},
		{ManifestPath(h), true},
		{"objects/" + hex[:2] + "/" + strings.ToUpper(hex), false},
		{"objects/00/" + hex, false},
		{"objects/" + hex[:2] + "/" + hex[:63], false},
		{"objects/" + hex[:2] + "/" + tempPrefix + "1", false},
		{"other/" + hex[:2] + "/" + hex, false},
		{LayoutFile, false},
	}
	for _, tc := range tests {
		if got := isContentName(tc.name); got != tc.ok {
			t.Errorf("isContentName(%q) = %v, want %v", tc.name, got, tc.ok)
		}
	}
}
