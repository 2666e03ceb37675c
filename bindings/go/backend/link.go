//go:build !vbpkgconfig

package backend

// Default linking: the header and the debug library of the repository this binding lives in
// (built with `cargo build --features test-providers --lib` from the repository root). The
// rpath lets tests and examples run without LD_LIBRARY_PATH.
//
// To link an installed library instead, build with `-tags vbpkgconfig` (see link_pkgconfig.go,
// which asks pkg-config for `voicebackend`), or prepend your own directories through the
// environment: CGO_CFLAGS="-I/opt/vb/include" CGO_LDFLAGS="-L/opt/vb/lib -Wl,-rpath,/opt/vb/lib"
// (flags from the environment come before the ones below, so they win).

/*
#cgo CFLAGS: -I${SRCDIR}/../../../include
#cgo LDFLAGS: -L${SRCDIR}/../../../target/debug -lvoicebackend -Wl,-rpath,${SRCDIR}/../../../target/debug
*/
import "C"
