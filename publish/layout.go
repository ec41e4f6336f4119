package publish

import (
	"context"
	"strings"

	"github.com/voxsync/voxsync/mirror"
	"github.com/voxsync/voxsync/resources"
)

// The layout's names and version are the clients' (package mirror reads
// them): one definition for both sides.
const (
	LayoutVersion = mirror.LayoutVersion
	LayoutFile    = mirror.LayoutFile
)

// layoutJSON is LayoutFile's content.
var layoutJSON = []byte(`{"layout":1}` + "\n")

// The two directories of a base that hold content.
const (
	objectsDir   = mirror.ObjectsDir
	manifestsDir = mirror.ManifestsDir
)

// ObjectPath is where the bytes whose SHA-256 is h are, relative to the
// base: objects/<hh>/<hex>.
func ObjectPath(h resources.Hash) string { return mirror.ObjectPath(h) }

// ManifestPath is where the manifest file of the resource whose SHA-256
// is h is, relative to the base: manifests/<hh>/<hex>.
func ManifestPath(h resources.Hash) string { return mirror.ManifestPath(h) }

// isContentName reports whether name, relative to the base, is an object
// or manifest name of the layout. Anything else found under objects/ or
// manifests/ (temp files, strays) is not content.
func isContentName(name string) bool {
	var rest string
	switch {
	case strings.HasPrefix(name, objectsDir):
		rest = name[len(objectsDir):]
	case strings.HasPrefix(name, manifestsDir):
		rest = name[len(manifestsDir):]
	default:
		return false
	}
	if len(rest) != 2+1+64 || rest[2] != '/' || rest[:2] != rest[3:5] {
		return false
	}
	for _, c := range rest[3:] {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// Target is a base that content is published to.
type Target interface {
	// List returns the size of every object and manifest already at the
	// base, by name relative to it. A base that does not exist yet is
	// empty.
	List(ctx context.Context) (map[string]int64, error)
	// Get returns the bytes stored under name; more than max bytes is an
	// error.
	Get(ctx context.Context, name string, max int64) ([]byte, error)
	// Put stores data under name so that a reader sees all of it or
	// nothing, replacing what was there.
	Put(ctx context.Context, name string, data []byte) error
	// Flush makes everything Put so far durable.
	Flush(ctx context.Context) error
	// String names the base, as the operator gave it.
	String() string
}
