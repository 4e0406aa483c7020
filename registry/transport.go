package registry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"
)

// MaxManifest is the largest manifest or index accepted: real ones are a
// few KiB, and a registry that sends more is broken or hostile.
const MaxManifest = 4 << 20

// ErrManifestTooLarge is a manifest over MaxManifest.
var ErrManifestTooLarge = errors.New("manifest larger than 4 MiB")

// httpTransport wraps the registry client's HTTP: plain http only to the
// hosts that may have it (go-containerregistry would also pick http for
// private addresses), manifests capped, and a connection that sends
// nothing for idle is given up, so a stalled download ends in an error.
type httpTransport struct {
	base     http.RoundTripper
	insecure func(host string) bool
}

func newTransport(idle time.Duration, insecure func(string) bool) *httpTransport {
	d := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	base := &http.Transport{
		Proxy: http.ProxyFromEnvironment,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := d.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			return &idleConn{Conn: c, idle: idle}, nil
		},
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: idle,
		MaxIdleConnsPerHost:   8,
		ForceAttemptHTTP2:     true,
	}
	return &httpTransport{base: base, insecure: insecure}
}

func (t *httpTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme == "http" && !t.insecure(req.URL.Host) {
		return nil, fmt.Errorf("refusing plain http to %s (allowed for localhost, 127.0.0.1 and BOCKER_INSECURE_REGISTRIES)", req.URL.Host)
	}
	resp, err := t.base.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	if strings.Contains(req.URL.Path, "/manifests/") && req.Method == http.MethodGet {
		if resp.ContentLength > MaxManifest {
			resp.Body.Close()
			return nil, ErrManifestTooLarge
		}
		resp.Body = &capped{r: resp.Body, left: MaxManifest}
	}
	return resp, nil
}

type capped struct {
	r    io.ReadCloser
	left int64
}

func (c *capped) Read(p []byte) (int, error) {
	if c.left <= 0 {
		// One byte more than allowed tells a full manifest from a big one.
		var b [1]byte
		if n, _ := c.r.Read(b[:]); n > 0 {
			return 0, ErrManifestTooLarge
		}
		return c.r.Read(p)
	}
	if int64(len(p)) > c.left {
		p = p[:c.left]
	}
	n, err := c.r.Read(p)
	c.left -= int64(n)
	return n, err
}

func (c *capped) Close() error { return c.r.Close() }

// idleConn fails a read that waits longer than idle for a byte.
type idleConn struct {
	net.Conn
	idle time.Duration
}

func (c *idleConn) Read(p []byte) (int, error) {
	if err := c.Conn.SetReadDeadline(time.Now().Add(c.idle)); err != nil {
		return 0, err
	}
	n, err := c.Conn.Read(p)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		err = fmt.Errorf("no data from the registry for %v: %w", c.idle, err)
	}
	return n, err
}
