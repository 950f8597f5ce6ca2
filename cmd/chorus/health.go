package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/chorus-kv/chorus/internal/node"
	"github.com/chorus-kv/chorus/p2p"
)

// newHealthCmd is `chorus health [--endpoint URL]`: a probe for images
// with no shell (a Docker HEALTHCHECK, say). It GETs the URL and exits 0 on
// a 200, 1 otherwise, printing the body.
func newHealthCmd(cio *cmdIO) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "health [--endpoint URL]",
		Short: "exit 0 if the node's /readyz (or URL) answers 200, else 1",
		Args:  noArgs,
	}
	def := os.Getenv("CHORUS_HTTP_ENDPOINT")
	if def == "" {
		def = "http://" + node.DefaultListenHTTP + node.ReadyzPath
	}
	endpoint := cmd.Flags().String("endpoint", def, "URL to probe, or HOST:PORT for its "+node.ReadyzPath+" (default $CHORUS_HTTP_ENDPOINT)")
	timeout := cmd.Flags().Duration("timeout", 3*time.Second, "how long to wait for the answer")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		u, err := healthURL(*endpoint)
		if err != nil {
			return fmt.Errorf("%w: %v", errUsage, err)
		}
		ctx, cancel := context.WithTimeout(cmd.Context(), *timeout)
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
		_, _ = cio.stdout.Write(body)
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s answered %s", u, resp.Status)
		}
		return nil
	}
	return cmd
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

// newJoinSecretCmd prints a new random join secret for --join-secret.
func newJoinSecretCmd(cio *cmdIO) *cobra.Command {
	return &cobra.Command{
		Use:   "join-secret",
		Short: "print a new random join secret for --join-secret",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := p2p.GenerateJoinSecret()
			if err != nil {
				return err
			}
			_, err = cio.stdout.Write(s)
			return err
		},
	}
}
