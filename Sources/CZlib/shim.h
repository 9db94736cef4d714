#ifndef FED_CZLIB_SHIM_H
#define FED_CZLIB_SHIM_H

#include <zlib.h>

// deflateInit2 / inflateInit2 are C macros, which Swift cannot call.
// These inline wrappers expose them as functions.

static inline int fed_deflateInit2(z_streamp strm, int level, int windowBits) {
    return deflateInit2(strm, level, Z_DEFLATED, windowBits, 8, Z_DEFAULT_STRATEGY);
}

static inline int fed_inflateInit2(z_streamp strm, int windowBits) {
    return inflateInit2(strm, windowBits);
}

#endif
