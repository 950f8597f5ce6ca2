package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/chorus-kv/chorus/internal/node"
	"github.com/chorus-kv/chorus/p2p"
)

// runHealth is `chorus health [--endpoint URL]`: a probe for images with no
// shell (a Docker HEALTHCHECK, say). It GETs the URL and exits 0 on a 200,
// 1 otherwise, printing the body.
func runHealth(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("health", flag.ContinueOnError)
	fs.SetOutput(stderr)
	def := os.Getenv("CHORUS_HTTP_ENDPOINT")
	if def == "" {
		def = "http://" + node.DefaultListenHTTP + node.ReadyzPath
	}
	endpoint := fs.String("endpoint", def, "URL to probe, or HOST:PORT for its "+node.ReadyzPath+" (default $CHORUS_HTTP_ENDPOINT)")
	timeout := fs.Duration("timeout", 3*time.Second, "how long to wait for the answer")
	rest, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		return fmt.Errorf("%w: unexpected arguments %q", errUsage, rest)
	}
	u, err := healthURL(*endpoint)
	if err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("probe %s: %w", u, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	_, _ = stdout.Write(body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s answered %s", u, resp.Status)
	}
	return nil
}

// healthURL turns HOST:PORT into http://HOST:PORT/readyz and checks a URL.
func healthURL(s string) (string, error) {
	if !strings.Contains(s, "://") {
		s = "http://" + s
	}
	u, err := url.Parse(s)
	if err != nil {
		return "", fmt.Errorf("--endpoint %q: %v", s, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return "", fmt.Errorf("--endpoint %q: want an http or https URL", s)
	}
	if u.Host == "" {
		return "", fmt.Errorf("--endpoint %q: no host", s)
	}
	if u.Path == "" || u.Path == "/" {
		u.Path = node.ReadyzPath
	}
	return u.String(), nil
}

// runJoinSecret prints a new random join secret for --join-secret.
func runJoinSecret(_ context.Context, args []string, _ io.Reader, stdout, _ io.Writer) error {
	if len(args) != 0 {
		return fmt.Errorf("%w: join-secret takes no arguments", errUsage)
	}
	s, err := p2p.GenerateJoinSecret()
	if err != nil {
		return err
	}
	_, err = stdout.Write(s)
	return err
}
