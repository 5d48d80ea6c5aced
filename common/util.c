#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/mvl_common.h"

void *mvl_malloc(size_t n, mvl_error *err) {
    void *p = malloc(n ? n : 1);
    if (!p) mvl_fail(err, MVL_ERR_NOMEM, "out of memory allocating %zu bytes", n);
    return p;
}

void *mvl_calloc(size_t count, size_t size, mvl_error *err) {
    void *p = calloc(count ? count : 1, size ? size : 1);
    if (!p) mvl_fail(err, MVL_ERR_NOMEM, "out of memory allocating %zu x %zu bytes", count, size);
    return p;
}

char *mvl_path_join(const char *dir, const char *name) {
    size_t a = strlen(dir), b = strlen(name);
    char *p = malloc(a + b + 2);
    if (!p) return NULL;
    memcpy(p, dir, a);
    size_t n = a;
    if (a > 0 && dir[a - 1] != '/') p[n++] = '/';
    memcpy(p + n, name, b + 1);
    return p;
}

mvl_status mvl_read_file(const char *path, size_t max_bytes, char **out, size_t *out_len,
                         mvl_error *err) {
    *out = NULL;
    if (out_len) *out_len = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return mvl_fail(err, MVL_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        return mvl_fail(err, MVL_ERR_IO, "%s: not a regular file", path);
    }
    if ((uint64_t)st.st_size > max_bytes) {
        fclose(f);
        return mvl_fail(err, MVL_ERR_LIMIT, "%s: file is %lld bytes, over the %zu-byte limit", path,
                        (long long)st.st_size, max_bytes);
    }
    size_t n = (size_t)st.st_size;
    char *buf = mvl_malloc(n + 1, err);
    if (!buf) {
        fclose(f);
        return MVL_ERR_NOMEM;
    }
    size_t got = fread(buf, 1, n, f);
    int rerr = ferror(f);
    fclose(f);
    if (got != n || rerr) {
        free(buf);
        return mvl_fail(err, MVL_ERR_IO, "%s: read failed after %zu of %zu bytes", path, got, n);
    }
    buf[n] = '\0';
    *out = buf;
    if (out_len) *out_len = n;
    return MVL_OK;
}

mvl_status mvl_npy_write_f32(const char *path, const float *data, int ndim, const int64_t *shape,
                             mvl_error *err) {
    char dims[256] = "";
    size_t count = 1, off = 0;
    for (int i = 0; i < ndim; i++) {
        off += (size_t)snprintf(dims + off, sizeof dims - off, "%lld%s", (long long)shape[i],
                                (ndim == 1 || i + 1 < ndim) ? ", " : "");
        if (off >= sizeof dims || !mvl_mul_ok(count, (size_t)shape[i], &count))
            return mvl_fail(err, MVL_ERR_ARG, "%s: array shape too large for .npy", path);
    }
    if (ndim == 1) dims[off - 1] = '\0'; /* "(n,)" */
    char header[512];
    int hl = snprintf(header, sizeof header,
                      "{'descr': '<f4', 'fortran_order': False, 'shape': (%s), }", dims);
    /* magic(6) + version(2) + len(2) + header + '\n', padded to a multiple of 64 */
    size_t total = 10 + (size_t)hl + 1;
    size_t pad = (64 - total % 64) % 64;
    FILE *f = fopen(path, "wb");
    if (!f) return mvl_fail(err, MVL_ERR_IO, "%s: cannot create: %s", path, strerror(errno));
    uint16_t hlen = (uint16_t)(hl + pad + 1);
    unsigned char pre[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0,
                             (unsigned char)(hlen & 0xff), (unsigned char)(hlen >> 8)};
    int ok = fwrite(pre, 1, 10, f) == 10 && fwrite(header, 1, (size_t)hl, f) == (size_t)hl;
    for (size_t i = 0; ok && i < pad; i++) ok = fputc(' ', f) != EOF;
    ok = ok && fputc('\n', f) != EOF;
    ok = ok && fwrite(data, sizeof(float), count, f) == count; /* host is little-endian */
    ok = (fclose(f) == 0) && ok;
    if (!ok) return mvl_fail(err, MVL_ERR_IO, "%s: write failed: %s", path, strerror(errno));
    return MVL_OK;
}
