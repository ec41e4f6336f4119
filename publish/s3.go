package publish

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/minio/minio-go/v7/pkg/s3utils"
)

// S3Options say where an S3 base is and how to sign in.
type S3Options struct {
	// Endpoint is the server's URL, http:// or https:// (the scheme
	// decides TLS), with no path: http://127.0.0.1:9000,
	// https://s3.eu-west-1.amazonaws.com.
	Endpoint string
	// Bucket and Prefix locate the base; Prefix is "" or ends in "/".
	Bucket, Prefix string
	// AccessKey, SecretKey and SessionToken (temporary credentials only)
	// sign every request.
	AccessKey, SecretKey, SessionToken string
	// Region of the bucket; empty asks the server.
	Region string
}

// ParseS3URL splits s3://BUCKET[/PREFIX] into a bucket and a prefix that
// is empty or ends in "/". ok is false for anything that is not an s3://
// URL; err says what is wrong with one that is.
func ParseS3URL(s string) (bucket, prefix string, ok bool, err error) {
	rest, ok := strings.CutPrefix(s, "s3://")
	if !ok {
		return "", "", false, nil
	}
	bucket, prefix, _ = strings.Cut(rest, "/")
	if bucket == "" {
		return "", "", true, fmt.Errorf("%q names no bucket: want s3://BUCKET or s3://BUCKET/PREFIX", s)
	}
	if err := s3utils.CheckValidBucketNameStrict(bucket); err != nil {
		return "", "", true, fmt.Errorf("%s: bucket name %q: %v", s, bucket, err)
	}
	if prefix != "" && !strings.HasSuffix(prefix, "/") {
		prefix += "/"
	}
	if strings.HasPrefix(prefix, "/") || strings.Contains(prefix, "//") {
		return "", "", true, fmt.Errorf("%q has an empty path segment in its prefix", s)
	}
	return bucket, prefix, true, nil
}

// S3 is a base in an S3-compatible bucket (AWS S3, MinIO, …).
type S3 struct {
	opts   S3Options
	client *minio.Client
}

var _ Target = (*S3)(nil)

// retries: a failed request is tried this many times in all. minio-go's
// default of 10, with up to a second between tries, makes an endpoint that
// is down take ten seconds to report.
const retries = 4

// NewS3 returns the base opts describe. It does no I/O.
func NewS3(opts S3Options) (*S3, error) {
	u, err := url.Parse(opts.Endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("S3 endpoint %q: want http://HOST[:PORT] or https://HOST[:PORT]", opts.Endpoint)
	}
	if strings.Trim(u.Path, "/") != "" || u.RawQuery != "" {
		return nil, fmt.Errorf("S3 endpoint %q: a path is not supported; give the bucket and prefix in s3://BUCKET/PREFIX", opts.Endpoint)
	}
	if opts.AccessKey == "" || opts.SecretKey == "" {
		return nil, errors.New("S3 credentials missing: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
	}
	tr, err := minio.DefaultTransport(u.Scheme == "https")
	if err != nil {
		return nil, fmt.Errorf("S3 endpoint %q: %w", opts.Endpoint, err)
	}
	c, err := minio.New(u.Host, &minio.Options{
		Creds:      credentials.NewStaticV4(opts.AccessKey, opts.SecretKey, opts.SessionToken),
		Secure:     u.Scheme == "https",
		Region:     opts.Region,
		Transport:  tr,
		MaxRetries: retries,
	})
	if err != nil {
		return nil, fmt.Errorf("S3 endpoint %q: %w", opts.Endpoint, err)
	}
	c.SetAppInfo("voxsync-publish", "1")
	return &S3{opts: opts, client: c}, nil
}

// PublicBase is the base's URL for plain HTTP GETs (path style), as a
// mirror URL would name it.
func (s *S3) PublicBase() string {
	return strings.TrimSuffix(s.opts.Endpoint, "/") + "/" + s.opts.Bucket + "/" + s.opts.Prefix
}

func (s *S3) String() string { return "s3://" + s.opts.Bucket + "/" + s.opts.Prefix }

// EnsureBucket creates the bucket if it is missing and, with publicRead,
// lets anyone GET objects under the prefix, so that plain HTTP clients
// and caches can fetch them. The grant is added to the bucket's policy,
// never replacing what other prefixes were given.
func (s *S3) EnsureBucket(ctx context.Context, publicRead bool) error {
	ok, err := s.client.BucketExists(ctx, s.opts.Bucket)
	if err != nil {
		return s.explain("check bucket "+s.opts.Bucket, "s3:ListBucket", err)
	}
	if !ok {
		err := s.client.MakeBucket(ctx, s.opts.Bucket, minio.MakeBucketOptions{Region: s.opts.Region})
		if err != nil && minio.ToErrorResponse(err).Code != "BucketAlreadyOwnedByYou" {
			return s.explain("create bucket "+s.opts.Bucket, "s3:CreateBucket", err)
		}
	}
	if !publicRead {
		return nil
	}
	old, err := s.client.GetBucketPolicy(ctx, s.opts.Bucket)
	if err != nil {
		return s.explain("read the policy of bucket "+s.opts.Bucket, "s3:GetBucketPolicy", err)
	}
	policy, changed, err := withPublicRead(old, s.resourceARN())
	if err != nil {
		return fmt.Errorf("read the policy of bucket %s: %w", s.opts.Bucket, err)
	}
	if !changed {
		return nil
	}
	if err := s.client.SetBucketPolicy(ctx, s.opts.Bucket, policy); err != nil {
		return s.explain("set the public-read policy of bucket "+s.opts.Bucket, "s3:PutBucketPolicy", err)
	}
	return nil
}

// resourceARN is what the public-read grant covers: every key under the
// prefix.
func (s *S3) resourceARN() string { return "arn:aws:s3:::" + s.opts.Bucket + "/" + s.opts.Prefix + "*" }

func (s *S3) List(ctx context.Context) (map[string]int64, error) {
	have := map[string]int64{}
	for _, dir := range []string{objectsDir, manifestsDir} {
		ctx, cancel := context.WithCancel(ctx) // stops the lister if we return early
		for o := range s.client.ListObjects(ctx, s.opts.Bucket, minio.ListObjectsOptions{Prefix: s.opts.Prefix + dir, Recursive: true}) {
			if o.Err != nil {
				cancel()
				if minio.ToErrorResponse(o.Err).Code == minio.NoSuchBucket {
					return map[string]int64{}, nil // created by EnsureBucket, or a dry run
				}
				return nil, s.explain("list "+s.String()+dir, "s3:ListBucket", o.Err)
			}
			if name := strings.TrimPrefix(o.Key, s.opts.Prefix); isContentName(name) {
				have[name] = o.Size
			}
		}
		cancel()
	}
	return have, nil
}

func (s *S3) Get(ctx context.Context, name string, max int64) ([]byte, error) {
	o, err := s.client.GetObject(ctx, s.opts.Bucket, s.opts.Prefix+name, minio.GetObjectOptions{})
	if err != nil {
		return nil, s.explain("download "+name, "s3:GetObject", err)
	}
	defer o.Close()
	b, err := io.ReadAll(io.LimitReader(o, max+1))
	if err != nil {
		return nil, s.explain("download "+name, "s3:GetObject", err)
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("download %s: longer than %d bytes", name, max)
	}
	return b, nil
}

// Put uploads data in one request. Objects are immutable, so caches may
// keep them forever; a manifest is rewritten when a newer version writes
// it in a newer format, so it is kept a day; the layout file may change
// and is not to be cached.
func (s *S3) Put(ctx context.Context, name string, data []byte) error {
	cache := "public, max-age=31536000, immutable"
	switch {
	case name == LayoutFile:
		cache = "no-cache"
	case strings.HasPrefix(name, manifestsDir):
		cache = "public, max-age=86400"
	}
	_, err := s.client.PutObject(ctx, s.opts.Bucket, s.opts.Prefix+name, bytes.NewReader(data), int64(len(data)), minio.PutObjectOptions{
		ContentType:      "application/octet-stream",
		CacheControl:     cache,
		DisableMultipart: true, // at most a 35 MiB manifest: one request
	})
	if err != nil {
		return s.explain("upload "+name, "s3:PutObject", err)
	}
	return nil
}

// Flush does nothing: a PUT that succeeded is durable.
func (s *S3) Flush(context.Context) error { return nil }

// explain wraps err from doing what with what an operator should do about
// it: which permission is missing, which setting is wrong.
func (s *S3) explain(what, action string, err error) error {
	var hint string
	resp := minio.ToErrorResponse(err)
	var nerr net.Error
	var uerr *url.Error
	switch {
	case errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("%s: %w", what, err)
	case resp.Code == "InvalidAccessKeyId":
		hint = "the endpoint does not know the access key in AWS_ACCESS_KEY_ID; check it and -s3-endpoint"
	case resp.Code == "SignatureDoesNotMatch":
		hint = "AWS_SECRET_ACCESS_KEY does not match AWS_ACCESS_KEY_ID"
	case resp.Code == "InvalidTokenId" || resp.Code == "ExpiredToken":
		hint = "the temporary credentials (AWS_SESSION_TOKEN) are invalid or expired; get new ones"
	case resp.Code == "AccessDenied" || resp.StatusCode == http.StatusForbidden:
		hint = fmt.Sprintf("the access key %s may not %s on %s; grant it, or use a key that may", s.opts.AccessKey, action, s.resourceARN())
	case resp.Code == minio.NoSuchBucket:
		hint = "the bucket does not exist"
	case errors.As(err, &nerr) || errors.As(err, &uerr):
		hint = fmt.Sprintf("cannot reach the S3 endpoint %s: is -s3-endpoint right (http:// or https://), and is the server running?", s.opts.Endpoint)
	}
	if hint == "" {
		return fmt.Errorf("%s: %w", what, err)
	}
	return fmt.Errorf("%s: %w (%s)", what, err, hint)
}

// policyStatement is the part of an S3 bucket policy statement that
// withPublicRead reads; Action, Resource and Principal may each be a
// string or a list.
type policyStatement struct {
	Effect    string          `json:"Effect"`
	Principal json.RawMessage `json:"Principal"`
	Action    json.RawMessage `json:"Action"`
	Resource  json.RawMessage `json:"Resource"`
	// A statement with any of these grants less than everyone
	// everything it names (or everything else): it is not the grant.
	Condition    json.RawMessage `json:"Condition"`
	NotPrincipal json.RawMessage `json:"NotPrincipal"`
	NotAction    json.RawMessage `json:"NotAction"`
	NotResource  json.RawMessage `json:"NotResource"`
}

// withPublicRead returns the bucket policy old (JSON, "" for none) with a
// statement letting anyone s3:GetObject on arn, and whether that changed
// anything. Other statements are kept as they are.
func withPublicRead(old, arn string) (string, bool, error) {
	var doc map[string]json.RawMessage
	if strings.TrimSpace(old) == "" {
		doc = map[string]json.RawMessage{"Version": json.RawMessage(`"2012-10-17"`)}
	} else if err := json.Unmarshal([]byte(old), &doc); err != nil {
		return "", false, fmt.Errorf("bucket policy is not JSON: %w", err)
	}
	var stmts []json.RawMessage
	if raw, ok := doc["Statement"]; ok {
		if err := json.Unmarshal(raw, &stmts); err != nil {
			return "", false, fmt.Errorf("bucket policy's Statement is not a list: %w", err)
		}
	}
	for _, raw := range stmts {
		var st policyStatement
		if json.Unmarshal(raw, &st) == nil && st.Effect == "Allow" && isEveryone(st.Principal) &&
			st.Condition == nil && st.NotPrincipal == nil && st.NotAction == nil && st.NotResource == nil &&
			slices.Contains(stringOrList(st.Action), "s3:GetObject") && slices.Contains(stringOrList(st.Resource), arn) {
			return old, false, nil
		}
	}
	grant, _ := json.Marshal(map[string]any{
		"Effect":    "Allow",
		"Principal": map[string]any{"AWS": []string{"*"}},
		"Action":    []string{"s3:GetObject"},
		"Resource":  []string{arn},
	})
	stmts = append(stmts, grant)
	doc["Statement"], _ = json.Marshal(stmts)
	out, err := json.Marshal(doc)
	return string(out), true, err
}

func isEveryone(p json.RawMessage) bool {
	if slices.Contains(stringOrList(p), "*") {
		return true
	}
	var m map[string]json.RawMessage
	return json.Unmarshal(p, &m) == nil && slices.Contains(stringOrList(m["AWS"]), "*")
}

func stringOrList(raw json.RawMessage) []string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return []string{s}
	}
	var l []string
	json.Unmarshal(raw, &l)
	return l
}
