package backend

// The C side of SetLogger, exported to C (log.go adapts it to the exact VbLogCallback type). It
// runs on the library's log thread.

/*
#include <stdint.h>
*/
import "C"

import (
	"context"
	"log/slog"
	"unsafe"
)

//export vbgoOnLog
func vbgoOnLog(_ unsafe.Pointer, level C.int32_t, target, message *C.char) {
	l := logger.Load()
	if l == nil {
		return
	}
	l.LogAttrs(context.Background(), slogLevel(int32(level)), C.GoString(message),
		slog.String("target", C.GoString(target)))
}
