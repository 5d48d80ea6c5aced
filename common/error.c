#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "common/mvl_common.h"

const char *mvl_status_name(mvl_status st) {
    switch (st) {
    case MVL_OK: return "ok";
    case MVL_ERR_ARG: return "invalid argument";
    case MVL_ERR_IO: return "i/o error";
    case MVL_ERR_FORMAT: return "malformed input";
    case MVL_ERR_UNSUPPORTED: return "unsupported";
    case MVL_ERR_LIMIT: return "limit exceeded";
    case MVL_ERR_NOMEM: return "out of memory";
    case MVL_ERR_DEVICE: return "device error";
    }
    return "unknown status";
}

mvl_status mvl_fail(mvl_error *err, mvl_status st, const char *fmt, ...) {
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
        err->status = st;
    }
    return st;
}

void mvl_error_prefix(mvl_error *err, const char *fmt, ...) {
    if (!err) return;
    char old[sizeof err->msg];
    memcpy(old, err->msg, sizeof old);
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
    if (n >= 0 && (size_t)n < sizeof err->msg)
        snprintf(err->msg + n, sizeof err->msg - (size_t)n, ": %.*s", (int)(sizeof err->msg - (size_t)n), old);
}
