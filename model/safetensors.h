/* safetensors over mmap: one file or a sharded set (model/).
 * Format: u64 little-endian header length N, N bytes of JSON header, then
 * the data region. Every tensor's data_offsets are relative to the data
 * region. Only headers are read at open; data pages fault in on first use. */
#ifndef MVL_SAFETENSORS_H
#define MVL_SAFETENSORS_H

#include "common/mvl_common.h"

/* Headers larger than this are rejected before reading (the reference
 * implementation uses the same 100 MB bound). */
#define MVL_ST_MAX_HEADER (100u * 1024u * 1024u)

typedef struct mvl_st_tensor {
    char *name;
    mvl_dtype dtype;
    int ndim;
    int64_t shape[MVL_MAX_DIMS];
    uint64_t begin, end; /* byte offsets in the data region of its file */
    int file;            /* index into mvl_st_set.files */
} mvl_st_tensor;

typedef struct mvl_st_file {
    char *path;
    const unsigned char *map; /* [size] read-only mapping of the whole file, NULL if empty */
    uint64_t size;
    uint64_t data_start;      /* 8 + header length */
} mvl_st_file;

typedef struct mvl_st_set {
    mvl_st_file *files;     /* [nfiles] */
    int nfiles;
    mvl_st_tensor *tensors; /* [ntensors] in file order, then header order */
    size_t ntensors;
    mvl_strmap by_name;     /* name -> index into tensors */
} mvl_st_set;

/* Opens DIR/model.safetensors.index.json and its shards, or DIR/model.safetensors. */
mvl_status mvl_st_open_dir(const char *dir, mvl_st_set **out, mvl_error *err);
/* Opens one safetensors file as a set of its own. */
mvl_status mvl_st_open_file(const char *path, mvl_st_set **out, mvl_error *err);
void mvl_st_close(mvl_st_set *set);

const mvl_st_tensor *mvl_st_find(const mvl_st_set *set, const char *name);
/* Fills a public view of t (data pointer into the mapping). */
void mvl_st_view(const mvl_st_set *set, const mvl_st_tensor *t, mvl_tensor_view *out);
uint64_t mvl_st_numel(const mvl_st_tensor *t);

#endif
