/* The C API of libvoicebackend, found through pkg-config's include path (PREFIX/include). */
#include <voicebackend.h>
