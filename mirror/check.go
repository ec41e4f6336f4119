package mirror

import (
	"context"
	"encoding/json"
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
	get := func(path, method string) (*http.Response, error) {
		req, err := http.NewRequestWithContext(ctx, method, base+path, nil)
		if err != nil {
			return nil, err
		}
		return client.Do(req)
	}
	resp, err := get(LayoutFile, http.MethodGet)
	if err != nil {
		return fmt.Errorf("check mirror %s: %w", base, err)
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("check mirror %s: GET %s: %s: nothing published there yet (run gameserver publish -to … for this base), or not public-read", base, LayoutFile, resp.Status)
	}
	var marker struct {
		Layout int `json:"layout"`
	}
	if json.Unmarshal(body, &marker) != nil || marker.Layout != LayoutVersion {
		return fmt.Errorf("check mirror %s: %s says %q; this server reads layout %d", base, LayoutFile, body, LayoutVersion)
	}
	missing := 0
	for _, h := range sample {
		resp, err := get(ObjectPath(h), http.MethodHead)
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
