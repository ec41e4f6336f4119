package mirror

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/voxsync/voxsync/resources"
)

// LayoutFile is the marker `gameserver publish` writes last at a base,
// {"layout": LayoutVersion}: the version of the layout of ObjectPath and
// ManifestPath that this package reads.
const (
	LayoutFile    = "voxsync-mirror.json"
	LayoutVersion = 1
)

// Check asks a mirror what an operator would: is the published layout
// there (LayoutFile, layout 1), and does it hold the sample objects (some
// of this server's content)? It returns nil, or an error saying what is
// wrong and what to do. The server runs it at start and only logs it: a
// mirror may be published later, and clients cope either way.
func Check(ctx context.Context, base string, sample []resources.Hash) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	client := &http.Client{}
	if _, err := readLayout(ctx, client, base); err != nil {
		return fmt.Errorf("check mirror %s: %w", base, err)
	}
	missing := 0
	for _, h := range sample {
		req, err := http.NewRequestWithContext(ctx, http.MethodHead, base+ObjectPath(h), nil)
		if err != nil {
			return fmt.Errorf("check mirror %s: %w", base, err)
		}
		resp, err := client.Do(req)
		if err != nil {
			return fmt.Errorf("check mirror %s: %w", base, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			missing++
		}
	}
	if missing > 0 {
		return fmt.Errorf("check mirror %s: %d of %d sampled resources of this server are not there: publish these packs to it (clients fetch what is missing from this server meanwhile)", base, missing, len(sample))
	}
	return nil
}

// ErrNotMirror: a base serves no voxsync-mirror.json of a layout this
// package reads: nothing was published there (or not completely), it is
// not public, or it is not a mirror at all.
var ErrNotMirror = errors.New("not a published voxsync mirror")

// readLayout reads a base's LayoutFile. An answer that it is not a mirror
// wraps ErrNotMirror; anything else (no connection, a 5xx) is a failure
// that may pass.
func readLayout(ctx context.Context, client *http.Client, base string) (notMirror bool, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+LayoutFile, nil)
	if err != nil {
		return true, fmt.Errorf("%w: %v", ErrNotMirror, err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return false, fmt.Errorf("get %s: %w", LayoutFile, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	switch {
	case resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests:
		return false, fmt.Errorf("get %s: %s", LayoutFile, resp.Status)
	case resp.StatusCode != http.StatusOK:
		return true, fmt.Errorf("%w: GET %s: %s: nothing published there yet (run gameserver publish -to … for this base), the URL is not the base it was published to (a bucket's prefix included), or the bucket is not public-read", ErrNotMirror, LayoutFile, resp.Status)
	}
	var marker struct {
		Layout int `json:"layout"`
	}
	if json.Unmarshal(body, &marker) != nil || marker.Layout != LayoutVersion {
		return true, fmt.Errorf("%w: %s says %q; this version reads layout %d", ErrNotMirror, LayoutFile, body, LayoutVersion)
	}
	return false, nil
}
