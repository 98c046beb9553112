package ftps

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// S3Config is [storage.s3]: how to reach the S3-compatible server that
// holds the homes written "s3://bucket/prefix/".
type S3Config struct {
	// Endpoint is the server's URL; empty means AWS.
	Endpoint string `toml:"endpoint"`
	// Region signs the requests; default us-east-1.
	Region string `toml:"region"`
	// PathStyle addresses buckets as endpoint/bucket (most non-AWS servers)
	// rather than bucket.endpoint.
	PathStyle bool `toml:"path_style"`
	// AccessKeyID and SecretAccessKeyFile give static credentials; without
	// them the standard AWS chain (environment, shared files, instance
	// role) is used.
	AccessKeyID         string `toml:"access_key_id"`
	SecretAccessKeyFile string `toml:"secret_access_key_file"`
	// SecretAccessKey inline works but is warned about: the main file is
	// often readable by more people than a secret should be.
	SecretAccessKey string `toml:"secret_access_key"`
	// PartSizeMiB is a multipart upload's part size in MiB (5 to 512); an
	// upload holds two parts in memory. Default 8.
	PartSizeMiB int `toml:"part_size_mib"`
	// Timeout bounds each request that moves no file data (a listing, a
	// HEAD, a delete), and how long the store may make a transfer wait
	// for a read or a write; completing an upload and a rename's copy get
	// ten times as long. Default 15s: under FileZilla's 20 s, so that the
	// client reads the 451 rather than timing out itself.
	Timeout time.Duration `toml:"timeout"`
	// MFMT is what MFMT does on an S3 home, where an object's time is the
	// store's: "refuse" (502, the default) or "ignore" (213 with the time
	// the object keeps, for clients such as rclone and WinSCP that fail an
	// upload whose MFMT fails).
	MFMT string `toml:"mfmt"`
}

// Validate fills the defaults and names the key at fault.
func (c *S3Config) Validate() error {
	if c.Region == "" {
		c.Region = "us-east-1"
	}
	if c.PartSizeMiB == 0 {
		c.PartSizeMiB = 8
	}
	if c.PartSizeMiB < 5 || c.PartSizeMiB > 512 {
		return fmt.Errorf("storage.s3.part_size_mib: %d is not between 5 and 512", c.PartSizeMiB)
	}
	if c.Timeout == 0 {
		c.Timeout = 15 * time.Second
	}
	if c.Timeout < time.Second {
		return fmt.Errorf("storage.s3.timeout: %s is less than 1s", c.Timeout)
	}
	switch c.MFMT {
	case "":
		c.MFMT = "refuse"
	case "refuse", "ignore":
	default:
		return fmt.Errorf("storage.s3.mfmt: %q is neither \"refuse\" nor \"ignore\"", c.MFMT)
	}
	if c.Endpoint != "" {
		u, err := url.Parse(c.Endpoint)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("storage.s3.endpoint: %q is not an http(s) URL", c.Endpoint)
		}
	}
	if c.SecretAccessKeyFile != "" && c.SecretAccessKey != "" {
		return fmt.Errorf("storage.s3.secret_access_key_file: set together with secret_access_key; keep one")
	}
	if (c.SecretAccessKeyFile != "" || c.SecretAccessKey != "") && c.AccessKeyID == "" {
		return fmt.Errorf("storage.s3.access_key_id: missing, but a secret access key is set")
	}
	if c.AccessKeyID != "" && c.SecretAccessKeyFile == "" && c.SecretAccessKey == "" {
		return fmt.Errorf("storage.s3.secret_access_key_file: missing, but access_key_id is set")
	}
	return nil
}

// newS3Client makes the client for c, reading the secret file now.
func newS3Client(ctx context.Context, c *S3Config) (*s3.Client, error) {
	opts := []func(*awsconfig.LoadOptions) error{
		awsconfig.WithRegion(c.Region),
		// Checksums only when the API requires them: non-AWS servers do
		// not all accept the newer default trailers.
		awsconfig.WithRequestChecksumCalculation(aws.RequestChecksumCalculationWhenRequired),
		awsconfig.WithResponseChecksumValidation(aws.ResponseChecksumValidationWhenRequired),
	}
	if c.AccessKeyID != "" {
		secret := c.SecretAccessKey
		if c.SecretAccessKeyFile != "" {
			b, err := os.ReadFile(c.SecretAccessKeyFile)
			if err != nil {
				return nil, fmt.Errorf("storage.s3.secret_access_key_file: %w", err)
			}
			secret = strings.TrimSpace(string(b))
		}
		opts = append(opts, awsconfig.WithCredentialsProvider(
			credentials.NewStaticCredentialsProvider(c.AccessKeyID, secret, "")))
	}
	cfg, err := awsconfig.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("storage.s3: %w", err)
	}
	return s3.NewFromConfig(cfg, func(o *s3.Options) {
		if c.Endpoint != "" {
			o.BaseEndpoint = aws.String(c.Endpoint)
		}
		o.UsePathStyle = c.PathStyle
	}), nil
}

// parseS3Home splits "s3://bucket/prefix/" into the bucket and a prefix
// that is empty or ends in "/". The prefix must be clean: no "." or ".."
// element, no empty one, no backslash.
func parseS3Home(home string) (bucket, prefix string, err error) {
	rest, ok := strings.CutPrefix(home, "s3://")
	if !ok {
		return "", "", fmt.Errorf("%q is not an s3:// home", home)
	}
	bucket, prefix, _ = strings.Cut(rest, "/")
	if bucket == "" {
		return "", "", fmt.Errorf("%q names no bucket", home)
	}
	prefix = strings.TrimSuffix(prefix, "/")
	if prefix != "" {
		for el := range strings.SplitSeq(prefix, "/") {
			if el == "" || el == "." || el == ".." || strings.ContainsAny(el, "\\\x00") {
				return "", "", fmt.Errorf("%q: the prefix must be clean (no empty, \".\" or \"..\" element)", home)
			}
		}
		prefix += "/"
	}
	return bucket, prefix, nil
}

// IsS3Home reports whether a home is an s3:// URL.
func IsS3Home(home string) bool { return strings.HasPrefix(home, "s3://") }

// ValidateS3Home checks the form of an "s3://bucket/prefix/" home.
func ValidateS3Home(home string) error {
	_, _, err := parseS3Home(home)
	return err
}

// s3Conn is a client and the configuration it was made from.
type s3Conn struct {
	cfg    S3Config
	client *s3.Client
}

// openS3Home returns the storage of an s3:// home for a session: its
// requests end with ctx, and its errors are logged to log. Nothing is sent
// to the server here: an unreachable server shows on the first command.
func (s *Server) openS3Home(ctx context.Context, log *slog.Logger, home string) (*s3Storage, error) {
	bucket, prefix, err := parseS3Home(home)
	if err != nil {
		return nil, err
	}
	cfg := s.cfg.Load().S3
	if err := cfg.Validate(); err != nil { // a Config that was not validated
		return nil, err
	}
	conn := s.s3.Load()
	if conn == nil || conn.cfg != cfg {
		lctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		client, err := newS3Client(lctx, &cfg)
		cancel()
		if err != nil {
			return nil, err
		}
		old := conn
		conn = &s3Conn{cfg: cfg, client: client}
		// Kept only if no reload came meanwhile: this client may hold the
		// secret from before it.
		s.s3.CompareAndSwap(old, conn)
	}
	return &s3Storage{ctx: ctx, client: conn.client, bucket: bucket, prefix: prefix,
		partSize: cfg.PartSizeMiB << 20, timeout: cfg.Timeout, ignoreMFMT: cfg.MFMT == "ignore", log: log}, nil
}

// S3Check is the answer of the store for one bucket of the s3:// homes.
type S3Check struct {
	Bucket string // "": the settings themselves failed (no client)
	Err    error  // nil: reachable with these credentials; else with a hint
}

// CheckS3 asks the store once for each bucket of the s3:// homes (a
// listing of at most one key under a home's prefix), so that wrong
// credentials, a missing bucket or an unreachable endpoint show at deploy
// time rather than at a user's first command. Nothing is written.
func CheckS3(ctx context.Context, cfg S3Config, homes []string) []S3Check {
	if err := cfg.Validate(); err != nil {
		return []S3Check{{Err: err}}
	}
	prefixes := map[string]string{} // bucket: the first home's prefix
	var buckets []string
	for _, h := range homes {
		if b, p, err := parseS3Home(h); err == nil && IsS3Home(h) {
			if _, seen := prefixes[b]; !seen {
				prefixes[b] = p
				buckets = append(buckets, b)
			}
		}
	}
	if len(buckets) == 0 {
		return nil
	}
	client, err := newS3Client(ctx, &cfg)
	if err != nil {
		return []S3Check{{Err: err}}
	}
	// At once, each bounded by the timeout: a bucket that hangs does not
	// eat the others' time.
	out := make([]S3Check, len(buckets))
	var wg sync.WaitGroup
	for i, b := range buckets {
		wg.Go(func() {
			st := &s3Storage{ctx: ctx, client: client, bucket: b, prefix: prefixes[b], timeout: cfg.Timeout}
			_, err := st.dirKeys(st.prefix, 1)
			if err != nil {
				f := classifyS3(err)
				err = fmt.Errorf("%s: %w", cmp.Or(f.hint, "the store refused the request"), err)
			}
			out[i] = S3Check{Bucket: b, Err: err}
		})
	}
	wg.Wait()
	return out
}
