#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "model/safetensors.h"

static const char *const dtype_names[MVL_DTYPE_COUNT] = {"F32", "F16", "BF16", "I8", "F8_E4M3"};
static const size_t dtype_sizes[MVL_DTYPE_COUNT] = {4, 2, 2, 1, 1};

const char *mvl_dtype_name(mvl_dtype dt) { return dt < MVL_DTYPE_COUNT ? dtype_names[dt] : "?"; }
size_t mvl_dtype_size(mvl_dtype dt) { return dt < MVL_DTYPE_COUNT ? dtype_sizes[dt] : 0; }

uint64_t mvl_st_numel(const mvl_st_tensor *t) {
    uint64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= (uint64_t)t->shape[i];
    return n;
}

static void set_free_contents(mvl_st_set *s) {
    for (int i = 0; i < s->nfiles; i++) {
        if (s->files[i].map) munmap((void *)s->files[i].map, s->files[i].size);
        free(s->files[i].path);
    }
    for (size_t i = 0; i < s->ntensors; i++) free(s->tensors[i].name);
    free(s->files);
    free(s->tensors);
    mvl_strmap_free(&s->by_name);
}

void mvl_st_close(mvl_st_set *set) {
    if (!set) return;
    set_free_contents(set);
    free(set);
}

static int cmp_by_begin(const void *a, const void *b) {
    const mvl_st_tensor *x = *(const mvl_st_tensor *const *)a, *y = *(const mvl_st_tensor *const *)b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    return x->end < y->end ? -1 : x->end > y->end;
}

/* Parses one tensor entry of a header into t. */
static mvl_status parse_entry(const char *path, const char *name, json_t *e, uint64_t data_len,
                              mvl_st_tensor *t, mvl_error *err) {
    if (!json_is_object(e))
        return mvl_fail(err, MVL_ERR_FORMAT, "%s: tensor '%s': entry is not a JSON object", path, name);
    json_t *jd = json_object_get(e, "dtype"), *js = json_object_get(e, "shape"),
           *jo = json_object_get(e, "data_offsets");
    if (!json_is_string(jd))
        return mvl_fail(err, MVL_ERR_FORMAT, "%s: tensor '%s': missing or non-string \"dtype\"", path, name);
    if (!json_is_array(js))
        return mvl_fail(err, MVL_ERR_FORMAT, "%s: tensor '%s': missing or non-array \"shape\"", path, name);
    if (!json_is_array(jo) || json_array_size(jo) != 2)
        return mvl_fail(err, MVL_ERR_FORMAT, "%s: tensor '%s': \"data_offsets\" must be [begin, end]",
                        path, name);
    const char *ds = json_string_value(jd);
    t->dtype = MVL_DTYPE_COUNT;
    for (int d = 0; d < MVL_DTYPE_COUNT; d++)
        if (!strcmp(ds, dtype_names[d])) t->dtype = (mvl_dtype)d;
    if (t->dtype == MVL_DTYPE_COUNT)
        return mvl_fail(err, MVL_ERR_UNSUPPORTED,
                        "%s: tensor '%s': dtype %s is not supported (BF16, F16, F32, I8, F8_E4M3 are)",
                        path, name, ds);
    size_t nd = json_array_size(js);
    if (nd > MVL_MAX_DIMS)
        return mvl_fail(err, MVL_ERR_UNSUPPORTED, "%s: tensor '%s': %zu dimensions (at most %d)", path,
                        name, nd, MVL_MAX_DIMS);
    t->ndim = (int)nd;
    uint64_t numel = 1;
    for (size_t i = 0; i < nd; i++) {
        json_t *v = json_array_get(js, i);
        if (!json_is_integer(v) || json_integer_value(v) < 0)
            return mvl_fail(err, MVL_ERR_FORMAT, "%s: tensor '%s': shape[%zu] is not a non-negative integer",
                            path, name, i);
        t->shape[i] = json_integer_value(v);
        if (__builtin_mul_overflow(numel, (uint64_t)t->shape[i], &numel))
            return mvl_fail(err, MVL_ERR_FORMAT, "%s: tensor '%s': shape overflows 64 bits", path, name);
    }
    json_t *b = json_array_get(jo, 0), *en = json_array_get(jo, 1);
    if (!json_is_integer(b) || !json_is_integer(en) || json_integer_value(b) < 0 ||
        json_integer_value(en) < 0)
        return mvl_fail(err, MVL_ERR_FORMAT, "%s: tensor '%s': data_offsets are not non-negative integers",
                        path, name);
    t->begin = (uint64_t)json_integer_value(b);
    t->end = (uint64_t)json_integer_value(en);
    if (t->end < t->begin)
        return mvl_fail(err, MVL_ERR_FORMAT, "%s: tensor '%s': data_offsets end %llu is before begin %llu",
                        path, name, (unsigned long long)t->end, (unsigned long long)t->begin);
    if (t->end > data_len)
        return mvl_fail(err, MVL_ERR_FORMAT,
                        "%s: tensor '%s': data_offsets [%llu, %llu) run past the data region (%llu bytes)",
                        path, name, (unsigned long long)t->begin, (unsigned long long)t->end,
                        (unsigned long long)data_len);
    uint64_t want;
    if (__builtin_mul_overflow(numel, (uint64_t)dtype_sizes[t->dtype], &want) || want != t->end - t->begin)
        return mvl_fail(err, MVL_ERR_FORMAT,
                        "%s: tensor '%s': holds %llu bytes but shape x %s needs %llu", path, name,
                        (unsigned long long)(t->end - t->begin), ds, (unsigned long long)want);
    return MVL_OK;
}

/* Reads and validates the header of path, appends its tensors to set. */
static mvl_status load_file(mvl_st_set *set, const char *path, mvl_error *err) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return mvl_fail(err, MVL_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    mvl_status st = MVL_OK;
    char *hdr = NULL;
    json_t *root = NULL;
    mvl_st_file f = {0};
    struct stat sb;
    unsigned char lenbuf[8];
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        st = mvl_fail(err, MVL_ERR_IO, "%s: not a regular file", path);
        goto done;
    }
    f.size = (uint64_t)sb.st_size;
    if (f.size < 8 || pread(fd, lenbuf, 8, 0) != 8) {
        st = mvl_fail(err, MVL_ERR_FORMAT, "%s: too short for a safetensors header (%llu bytes)", path,
                      (unsigned long long)f.size);
        goto done;
    }
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | lenbuf[i];
    if (hlen > MVL_ST_MAX_HEADER) {
        st = mvl_fail(err, MVL_ERR_FORMAT, "%s: header length %llu exceeds the %u-byte limit", path,
                      (unsigned long long)hlen, MVL_ST_MAX_HEADER);
        goto done;
    }
    if (hlen > f.size - 8) {
        st = mvl_fail(err, MVL_ERR_FORMAT, "%s: header length %llu runs past the end of the file (%llu bytes)",
                      path, (unsigned long long)hlen, (unsigned long long)f.size);
        goto done;
    }
    f.data_start = 8 + hlen;
    hdr = mvl_malloc(hlen + 1, err);
    if (!hdr) {
        st = MVL_ERR_NOMEM;
        goto done;
    }
    if (pread(fd, hdr, hlen, 8) != (ssize_t)hlen) {
        st = mvl_fail(err, MVL_ERR_IO, "%s: cannot read the header: %s", path, strerror(errno));
        goto done;
    }
    json_error_t je;
    root = json_loadb(hdr, hlen, JSON_REJECT_DUPLICATES, &je);
    if (!root) {
        st = mvl_fail(err, MVL_ERR_FORMAT, "%s: header is not valid JSON (line %d, column %d): %s", path,
                      je.line, je.column, je.text);
        goto done;
    }
    if (!json_is_object(root)) {
        st = mvl_fail(err, MVL_ERR_FORMAT, "%s: header is not a JSON object", path);
        goto done;
    }
    uint64_t data_len = f.size - f.data_start;
    size_t first = set->ntensors, count = json_object_size(root);
    mvl_st_tensor *grown = realloc(set->tensors, (first + count) * sizeof *grown);
    if (!grown) {
        st = mvl_fail(err, MVL_ERR_NOMEM, "%s: out of memory for %zu tensors", path, count);
        goto done;
    }
    set->tensors = grown;
    const char *name;
    json_t *e;
    json_object_foreach(root, name, e) {
        if (!strcmp(name, "__metadata__")) {
            const char *k;
            json_t *v;
            if (!json_is_object(e)) {
                st = mvl_fail(err, MVL_ERR_FORMAT, "%s: __metadata__ is not an object", path);
                goto done;
            }
            json_object_foreach(e, k, v) if (!json_is_string(v)) {
                st = mvl_fail(err, MVL_ERR_FORMAT, "%s: __metadata__ value for '%s' is not a string", path, k);
                goto done;
            }
            continue;
        }
        mvl_st_tensor *t = &set->tensors[set->ntensors];
        memset(t, 0, sizeof *t);
        if ((st = parse_entry(path, name, e, data_len, t, err)) != MVL_OK) goto done;
        t->file = set->nfiles;
        if (!(t->name = strdup(name))) {
            st = mvl_fail(err, MVL_ERR_NOMEM, "%s: out of memory", path);
            goto done;
        }
        set->ntensors++;
        bool fresh;
        if ((st = mvl_strmap_put(&set->by_name, t->name, strlen(t->name), (int64_t)(set->ntensors - 1), &fresh,
                                 err)) != MVL_OK)
            goto done;
        if (!fresh) {
            int64_t prev = 0;
            mvl_strmap_get(&set->by_name, t->name, strlen(t->name), &prev);
            st = mvl_fail(err, MVL_ERR_FORMAT, "%s: tensor '%s' is also defined in %s", path, t->name,
                          set->files[set->tensors[prev].file].path);
            goto done;
        }
    }
    /* Overlap check: sort this file's tensors by offset; each must start at
     * or after the end of the one before (empty tensors overlap nothing). */
    size_t n = set->ntensors - first;
    const mvl_st_tensor **order = mvl_malloc(n * sizeof *order, err);
    if (!order) {
        st = MVL_ERR_NOMEM;
        goto done;
    }
    for (size_t i = 0; i < n; i++) order[i] = &set->tensors[first + i];
    qsort(order, n, sizeof *order, cmp_by_begin);
    const mvl_st_tensor *prev = NULL;
    for (size_t i = 0; i < n && st == MVL_OK; i++) {
        if (order[i]->begin == order[i]->end) continue;
        if (prev && order[i]->begin < prev->end)
            st = mvl_fail(err, MVL_ERR_FORMAT, "%s: tensors '%s' and '%s' overlap in the data region", path,
                          prev->name, order[i]->name);
        prev = order[i];
    }
    free(order);
    if (st != MVL_OK) goto done;

    if (f.size > 0) {
        void *m = mmap(NULL, f.size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m == MAP_FAILED) {
            st = mvl_fail(err, MVL_ERR_IO, "%s: mmap failed: %s", path, strerror(errno));
            goto done;
        }
        f.map = m;
    }
    f.path = strdup(path);
    mvl_st_file *files = f.path ? realloc(set->files, (size_t)(set->nfiles + 1) * sizeof *files) : NULL;
    if (!files) {
        if (f.map) munmap((void *)f.map, f.size);
        free(f.path);
        st = mvl_fail(err, MVL_ERR_NOMEM, "%s: out of memory", path);
        goto done;
    }
    set->files = files;
    set->files[set->nfiles++] = f;
done:
    json_decref(root);
    free(hdr);
    close(fd);
    return st;
}

static mvl_status set_new(size_t expected, mvl_st_set **out, mvl_error *err) {
    mvl_st_set *s = mvl_calloc(1, sizeof *s, err);
    if (!s) return MVL_ERR_NOMEM;
    if (mvl_strmap_init(&s->by_name, expected, err) != MVL_OK) {
        free(s);
        return MVL_ERR_NOMEM;
    }
    *out = s;
    return MVL_OK;
}

mvl_status mvl_st_open_file(const char *path, mvl_st_set **out, mvl_error *err) {
    *out = NULL;
    mvl_st_set *s = NULL;
    mvl_status st = set_new(64, &s, err);
    if (st == MVL_OK && (st = load_file(s, path, err)) != MVL_OK) {
        mvl_st_close(s);
        return st;
    }
    *out = s;
    return st;
}

/* Shard names come from a file we did not write: keep them inside DIR. */
static bool shard_name_ok(const char *s) {
    return s[0] && s[0] != '.' && !strchr(s, '/') && !strchr(s, '\\');
}

static mvl_status open_index(const char *dir, const char *index_path, mvl_st_set **out, mvl_error *err) {
    char *text = NULL;
    json_t *root = NULL;
    mvl_st_set *s = NULL;
    mvl_strmap shards = {0}; /* shard name -> file index */
    mvl_status st = mvl_read_file(index_path, 64u << 20, &text, NULL, err);
    if (st != MVL_OK) return st;
    json_error_t je;
    root = json_loads(text, JSON_REJECT_DUPLICATES, &je);
    json_t *wm = root ? json_object_get(root, "weight_map") : NULL;
    if (!root) {
        st = mvl_fail(err, MVL_ERR_FORMAT, "%s: not valid JSON (line %d, column %d): %s", index_path, je.line,
                      je.column, je.text);
        goto done;
    }
    if (!json_is_object(wm)) {
        st = mvl_fail(err, MVL_ERR_FORMAT, "%s: missing \"weight_map\" object", index_path);
        goto done;
    }
    if ((st = set_new(json_object_size(wm), &s, err)) != MVL_OK) goto done;
    if ((st = mvl_strmap_init(&shards, 1024, err)) != MVL_OK) goto done;
    const char *name;
    json_t *v;
    /* Open each distinct shard once, in order of first mention. */
    json_object_foreach(wm, name, v) {
        if (!json_is_string(v)) {
            st = mvl_fail(err, MVL_ERR_FORMAT, "%s: weight_map entry '%s' is not a string", index_path, name);
            goto done;
        }
        const char *shard = json_string_value(v);
        if (!shard_name_ok(shard)) {
            st = mvl_fail(err, MVL_ERR_FORMAT, "%s: tensor '%s' names shard '%s', which is not a file in %s",
                          index_path, name, shard, dir);
            goto done;
        }
        if (mvl_strmap_get(&shards, shard, strlen(shard), NULL)) continue;
        char *p = mvl_path_join(dir, shard);
        if (!p) {
            st = mvl_fail(err, MVL_ERR_NOMEM, "out of memory");
            goto done;
        }
        if (access(p, F_OK) != 0) {
            st = mvl_fail(err, MVL_ERR_IO, "%s: tensor '%s' is in shard %s, which is missing", index_path, name,
                          p);
            free(p);
            goto done;
        }
        st = load_file(s, p, err);
        free(p);
        if (st != MVL_OK) goto done;
        /* key borrowed from the JSON tree, which outlives the map */
        if ((st = mvl_strmap_put(&shards, shard, strlen(shard), s->nfiles - 1, NULL, err)) != MVL_OK) goto done;
    }
    /* The index and the shards must describe the same set of tensors. */
    json_object_foreach(wm, name, v) {
        const mvl_st_tensor *t = mvl_st_find(s, name);
        const char *shard = json_string_value(v);
        int64_t fi = -1;
        mvl_strmap_get(&shards, shard, strlen(shard), &fi);
        if (!t) {
            st = mvl_fail(err, MVL_ERR_FORMAT, "%s: tensor '%s' is listed for shard %s but is not in it",
                          index_path, name, shard);
            goto done;
        }
        if (t->file != fi) {
            st = mvl_fail(err, MVL_ERR_FORMAT, "%s: tensor '%s' is listed for shard %s but stored in %s",
                          index_path, name, shard, s->files[t->file].path);
            goto done;
        }
    }
    for (size_t i = 0; i < s->ntensors; i++)
        if (!json_object_get(wm, s->tensors[i].name)) {
            st = mvl_fail(err, MVL_ERR_FORMAT, "%s: tensor '%s' is not listed in %s", s->files[s->tensors[i].file].path,
                          s->tensors[i].name, index_path);
            goto done;
        }
done:
    mvl_strmap_free(&shards);
    json_decref(root);
    free(text);
    if (st != MVL_OK) {
        mvl_st_close(s);
        s = NULL;
    }
    *out = s;
    return st;
}

mvl_status mvl_st_open_dir(const char *dir, mvl_st_set **out, mvl_error *err) {
    *out = NULL;
    char *index = mvl_path_join(dir, "model.safetensors.index.json");
    char *single = mvl_path_join(dir, "model.safetensors");
    mvl_status st;
    if (!index || !single)
        st = mvl_fail(err, MVL_ERR_NOMEM, "out of memory");
    else if (access(index, F_OK) == 0)
        st = open_index(dir, index, out, err);
    else if (access(single, F_OK) == 0)
        st = mvl_st_open_file(single, out, err);
    else
        st = mvl_fail(err, MVL_ERR_IO, "%s: no model.safetensors.index.json or model.safetensors", dir);
    free(index);
    free(single);
    return st;
}

const mvl_st_tensor *mvl_st_find(const mvl_st_set *set, const char *name) {
    int64_t i;
    return mvl_strmap_get(&set->by_name, name, strlen(name), &i) ? &set->tensors[i] : NULL;
}

void mvl_st_view(const mvl_st_set *set, const mvl_st_tensor *t, mvl_tensor_view *out) {
    const mvl_st_file *f = &set->files[t->file];
    out->name = t->name;
    out->dtype = t->dtype;
    out->ndim = t->ndim;
    memset(out->shape, 0, sizeof out->shape);
    memcpy(out->shape, t->shape, (size_t)t->ndim * sizeof t->shape[0]);
    out->data = f->map ? f->map + f->data_start + t->begin : NULL;
    out->nbytes = t->end - t->begin;
    out->file = f->path;
}
