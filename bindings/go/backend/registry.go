package backend

/*
#include <stdlib.h>
#include "voicebackend.h"
*/
import "C"

import (
	"context"
	"fmt"
	"sync"
	"unsafe"
)

// Registry is the engine's registry of backend providers ("local", and others as they are
// built). Providers are registered inside the engine; from Go the registry is read-only.
type Registry struct{}

var (
	registry     Registry
	abiCheckOnce sync.Once
	abiCheckErr  error
)

// GetRegistry returns the global registry.
func GetRegistry() *Registry { return &registry }

// ListProviders returns the names of the registered backend providers, e.g. ["local"]; nil if
// the engine could not list them.
func (r *Registry) ListProviders() []string {
	names, err := registryList()
	if err != nil {
		return nil
	}
	return names
}

// IsRegistered reports whether a backend provider named name exists.
func (r *Registry) IsRegistered(name string) bool {
	for _, n := range r.ListProviders() {
		if n == name {
			return true
		}
	}
	return false
}

// Create creates a backend of provider name (or cfg.Provider when name is "") from cfg
// (vb_backend_create); a nil cfg means all defaults. Start it before creating sessions and
// Close it when done. The engine call itself is not interruptible; ctx is checked before it.
func (r *Registry) Create(ctx context.Context, name string, cfg *Config) (*Backend, error) {
	const op = "Registry.Create"
	if err := ctxErr(ctx); err != nil {
		return nil, err
	}
	abiCheckOnce.Do(func() {
		if got := LibraryABIVersion(); got != ABIVersion {
			abiCheckErr = &BackendError{Op: op, Code: ErrCodeInternal,
				Message: fmt.Sprintf("libvoicebackend has C ABI version %d, this binding was built for %d", got, ABIVersion)}
		}
	})
	if abiCheckErr != nil {
		return nil, abiCheckErr
	}
	if cfg == nil {
		cfg = &Config{}
	}
	js, err := cfg.configJSON(op, name)
	if err != nil {
		return nil, err
	}
	cjs := C.CString(string(js))
	defer C.free(unsafe.Pointer(cjs))
	var out *C.VbBackend
	if err := call(op, func() C.enum_VbStatus { return C.vb_backend_create(cjs, &out) }); err != nil {
		return nil, err
	}
	hooks, err := installHooks(op, out, cfg)
	if err != nil {
		C.vb_backend_free(out)
		return nil, err
	}
	saved := *cfg
	if saved.Provider == "" {
		saved.Provider = name
	}
	saved.Tools = append([]Tool(nil), cfg.Tools...)
	b := newBackend(out, &saved, hooks)
	err = installTools(op, b)
	if err == nil {
		err = installIncoming(op, b)
	}
	if err != nil {
		C.vb_backend_free(out)
		hooks.release()
		b.releaseTools()
		b.cancel()
		return nil, err
	}
	return b, nil
}

// ctxErr is ctx.Err(), tolerating a nil ctx.
func ctxErr(ctx context.Context) error {
	if ctx == nil {
		return nil
	}
	return ctx.Err()
}
