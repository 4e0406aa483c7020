package registry

import (
	"context"
	"fmt"

	"github.com/bocker/bocker/store"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// Push uploads a stored image to ref and returns its manifest digest.
// Layers go gzipped; ones the registry has already are not sent again.
func Push(ctx context.Context, st *store.Store, rec *store.Image, refStr string, o Options) (string, error) {
	ref, err := ParseReference(refStr)
	if err != nil {
		return "", err
	}
	img, err := Image(st, rec, true)
	if err != nil {
		return "", err
	}
	if err := remote.Write(ref, img, remoteOptions(ctx, o)...); err != nil {
		return "", fmt.Errorf("push %s to %s: %w", rec.ID, refStr, err)
	}
	d, err := img.Digest()
	if err != nil {
		return "", fmt.Errorf("push %s: %w", rec.ID, err)
	}
	return d.String(), nil
}
