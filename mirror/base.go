package mirror

import (
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/voxsync/voxsync/packets"
	"github.com/voxsync/voxsync/resources"
)

// ErrBadBase: a mirror's base URL cannot be used (not http or https, no
// host, a query or fragment, or too long for the protocol).
var ErrBadBase = errors.New("unusable mirror URL")

// ParseBase checks a mirror's base URL and returns it with a trailing
// slash, so that object paths are appended to it. The server checks its
// configuration with it and a client the URLs it is sent: a URL the client
// cannot use costs that mirror only.
func ParseBase(raw string) (string, error) {
	if len(raw) > packets.MaxMirrorURLLen {
		return "", fmt.Errorf("%w: %d bytes, limit %d", ErrBadBase, len(raw), packets.MaxMirrorURLLen)
	}
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		return "", fmt.Errorf("%w: %v", ErrBadBase, err)
	case u.Scheme != "http" && u.Scheme != "https":
		return "", fmt.Errorf("%w: %q is not http:// or https://", ErrBadBase, raw)
	case u.Host == "":
		return "", fmt.Errorf("%w: %q has no host", ErrBadBase, raw)
	case u.User != nil:
		// Every player would see the credentials.
		return "", fmt.Errorf("%w: %q carries a user name or password", ErrBadBase, raw)
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "":
		return "", fmt.Errorf("%w: %q has a query or fragment; give the base the published layout is under", ErrBadBase, raw)
	}
	s := u.String()
	if !strings.HasSuffix(s, "/") {
		s += "/"
	}
	if len(s) > packets.MaxMirrorURLLen {
		return "", fmt.Errorf("%w: %d bytes, limit %d", ErrBadBase, len(s), packets.MaxMirrorURLLen)
	}
	return s, nil
}

// The directories of a base that hold content.
const (
	ObjectsDir   = "objects/"
	ManifestsDir = "manifests/"
)

// ObjectPath is where the bytes with SHA-256 h are under a mirror's base:
// objects/<first two hex digits>/<64 hex digits>.
func ObjectPath(h resources.Hash) string { return hashPath(ObjectsDir, h) }

// ManifestPath is where the manifest of the resource with SHA-256 h is:
// manifests/<first two hex digits>/<64 hex digits>.
func ManifestPath(h resources.Hash) string { return hashPath(ManifestsDir, h) }

func hashPath(dir string, h resources.Hash) string {
	x := h.String()
	return dir + x[:2] + "/" + x
}
