/* minimax-vl batch: many requests, one model load, one JSONL record each.
 *
 * Inputs: a folder (walked recursively; images found by content), a text
 * file of image paths, or a JSONL file of requests. Decoding and
 * preprocessing run on worker threads, ahead of the model, through a bounded
 * window of slots; the model runs on the main thread, in input order.
 *
 * Nothing is lost: each record is one write() of a whole line, then
 * fdatasync; --resume drops a torn last line and skips the records already
 * written; SIGINT finishes the record under way, then exits 130. */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "apps/cli.h"
#include "common/mvl_common.h"

static const char usage[] = "minimax-vl batch [options] INPUT -o OUT.jsonl   (INPUT: folder, list of paths, or JSONL)";

#define CAPTION_PROMPT "Describe this image." /* as caption's default */
#define MAX_INPUT_BYTES (1ull << 30)

/* ---- inputs ------------------------------------------------------------------ */

typedef struct item {
    char *key;       /* identity for --resume: the id as JSON, or "#line N" for a line without a usable id */
    char *id_json;   /* the "id" value as JSON text ("null" when the request had none) */
    char **files;    /* [n_files] image paths */
    int n_files;
    char *prompt;    /* NULL: the default prompt */
    char *error;     /* set when the request itself is bad: only an error record is written */
    long line;       /* line of a list or JSONL input (0 for folders) */
} item;

typedef struct items {
    item *v;
    size_t n, cap;
} items;

static void item_free(item *it) {
    free(it->key);
    free(it->id_json);
    for (int k = 0; k < it->n_files; k++) free(it->files[k]);
    free(it->files);
    free(it->prompt);
    free(it->error);
}

static void items_free(items *l) {
    for (size_t i = 0; i < l->n; i++) item_free(&l->v[i]);
    free(l->v);
}

static item *items_add(items *l, mvl_error *err) {
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        item *v = realloc(l->v, cap * sizeof *v);
        if (!v) {
            mvl_fail(err, MVL_ERR_NOMEM, "out of memory");
            return NULL;
        }
        l->v = v;
        l->cap = cap;
    }
    item *it = &l->v[l->n++];
    memset(it, 0, sizeof *it);
    return it;
}

static char *json_string_of(const char *s) {
    mvl_strbuf b = {0};
    mvl_strbuf_json(&b, s, strlen(s));
    if (b.oom) {
        free(b.p);
        return NULL;
    }
    return b.p;
}

/* An input naming one image: id = its path as given (list) or relative to the folder. */
static mvl_status add_path_item(items *l, const char *id, const char *path, long line, mvl_error *err) {
    item *it = items_add(l, err);
    if (!it) return MVL_ERR_NOMEM;
    it->line = line;
    it->id_json = json_string_of(id);
    it->key = it->id_json ? strdup(it->id_json) : NULL;
    it->files = malloc(sizeof *it->files);
    if (it->files && (it->files[0] = strdup(path))) it->n_files = 1;
    if (!it->key || !it->n_files) return mvl_fail(err, MVL_ERR_NOMEM, "out of memory");
    return MVL_OK;
}

/* A folder entry is an input when its first bytes are a JPEG or PNG
 * signature, or when its name says image: a broken or unsupported image then
 * gets an error record instead of vanishing. */
static bool looks_like_image(const char *path, const char *name) {
    static const char *const exts[] = {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".gif", ".webp",
                                       ".bmp", ".tif",  ".tiff", ".heic", ".heif", ".avif"};
    const char *dot = strrchr(name, '.');
    for (size_t i = 0; dot && i < sizeof exts / sizeof exts[0]; i++)
        if (!strcasecmp(dot, exts[i])) return true;
    unsigned char b[8] = {0};
    FILE *f = fopen(path, "rb");
    size_t n = f ? fread(b, 1, sizeof b, f) : 0;
    if (f) fclose(f);
    return (n >= 3 && b[0] == 0xFF && b[1] == 0xD8 && b[2] == 0xFF) ||
           (n == 8 && !memcmp(b, "\x89PNG\r\n\x1a\n", 8));
}

typedef struct walk {
    char **rel; /* relative paths found */
    size_t n, cap;
    size_t skipped;
} walk;

static mvl_status walk_dir(const char *root, const char *rel, walk *w, mvl_error *err) {
    char *dir = *rel ? mvl_path_join(root, rel) : strdup(root);
    if (!dir) return mvl_fail(err, MVL_ERR_NOMEM, "out of memory");
    DIR *d = opendir(dir);
    if (!d) {
        mvl_status st = mvl_fail(err, MVL_ERR_IO, "%s: cannot open folder: %s", dir, strerror(errno));
        free(dir);
        return st;
    }
    mvl_status st = MVL_OK;
    struct dirent *e;
    while (st == MVL_OK && (e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char *sub = *rel ? mvl_path_join(rel, e->d_name) : strdup(e->d_name);
        char *full = sub ? mvl_path_join(root, sub) : NULL;
        struct stat sb;
        if (!full) {
            st = mvl_fail(err, MVL_ERR_NOMEM, "out of memory");
        } else if (lstat(full, &sb) == 0 && S_ISDIR(sb.st_mode)) {
            st = walk_dir(root, sub, w, err); /* symlinked folders are not followed: no loops */
        } else if (stat(full, &sb) == 0 && S_ISREG(sb.st_mode) && looks_like_image(full, e->d_name)) {
            if (w->n == w->cap) {
                size_t cap = w->cap ? w->cap * 2 : 256;
                char **v = realloc(w->rel, cap * sizeof *v);
                if (!v) st = mvl_fail(err, MVL_ERR_NOMEM, "out of memory");
                else w->rel = v, w->cap = cap;
            }
            if (st == MVL_OK) {
                w->rel[w->n++] = sub;
                sub = NULL;
            }
        } else {
            w->skipped++;
        }
        free(sub);
        free(full);
    }
    closedir(d);
    free(dir);
    return st;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static mvl_status read_folder(const char *root, items *l, mvl_error *err) {
    walk w = {0};
    mvl_status st = walk_dir(root, "", &w, err);
    if (st == MVL_OK) qsort(w.rel, w.n, sizeof *w.rel, cmp_str);
    for (size_t i = 0; st == MVL_OK && i < w.n; i++) {
        char *full = mvl_path_join(root, w.rel[i]);
        st = full ? add_path_item(l, w.rel[i], full, 0, err) : mvl_fail(err, MVL_ERR_NOMEM, "out of memory");
        free(full);
    }
    if (st == MVL_OK && w.skipped)
        mvl_cli_log("batch: %s: %zu files skipped (not images by content or name)\n", root, w.skipped);
    for (size_t i = 0; i < w.n; i++) free(w.rel[i]);
    free(w.rel);
    return st;
}

/* Marks an item bad with a message (the request itself is invalid). */
static mvl_status item_error(item *it, long line, mvl_error *err, const char *fmt, const char *detail) {
    char msg[600];
    snprintf(msg, sizeof msg, fmt, detail);
    it->error = strdup(msg);
    if (!it->key) {
        char k[32];
        snprintf(k, sizeof k, "#line %ld", line);
        it->key = strdup(k);
    }
    if (!it->id_json) it->id_json = strdup("null");
    if (!it->error || !it->key || !it->id_json) return mvl_fail(err, MVL_ERR_NOMEM, "out of memory");
    return MVL_OK;
}

/* One JSONL request: {"id": string|number, "image": path | "images": [paths], "prompt": text}. */
static mvl_status parse_request(long line, const char *text, size_t len, items *l, mvl_error *err) {
    item *it = items_add(l, err);
    if (!it) return MVL_ERR_NOMEM;
    it->line = line;
    char where[64];
    snprintf(where, sizeof where, "line %ld", line);
    json_error_t je;
    json_t *o = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
    mvl_status st = MVL_OK;
    if (!json_is_object(o)) {
        st = item_error(it, line, err, o ? "%s: not a JSON object" : "%s: not valid JSON", where);
        json_decref(o);
        return st;
    }
    json_t *id = json_object_get(o, "id"), *img = json_object_get(o, "image"), *imgs = json_object_get(o, "images");
    json_t *prompt = json_object_get(o, "prompt");
    if (!id || !(json_is_string(id) || json_is_number(id))) {
        st = item_error(it, line, err, "%s: \"id\" (a string or a number) is required", where);
    } else if (!(it->id_json = json_dumps(id, JSON_ENCODE_ANY | JSON_COMPACT)) || !(it->key = strdup(it->id_json))) {
        st = mvl_fail(err, MVL_ERR_NOMEM, "out of memory");
    } else if (img && imgs) {
        st = item_error(it, line, err, "%s: give \"image\" or \"images\", not both", where);
    } else if ((img && !json_is_string(img)) || (imgs && !json_is_array(imgs))) {
        st = item_error(it, line, err, "%s: \"image\" must be a path, \"images\" an array of paths", where);
    } else if (prompt && !json_is_string(prompt)) {
        st = item_error(it, line, err, "%s: \"prompt\" must be a string", where);
    } else if (imgs && json_array_size(imgs) > MVL_CLI_MAX_IMAGES) {
        st = item_error(it, line, err, "%s: more than 256 images", where);
    } else {
        size_t n = img ? 1 : imgs ? json_array_size(imgs) : 0;
        it->files = calloc(n ? n : 1, sizeof *it->files);
        if (!it->files) st = mvl_fail(err, MVL_ERR_NOMEM, "out of memory");
        for (size_t k = 0; st == MVL_OK && k < n; k++) {
            json_t *s = img ? img : json_array_get(imgs, k);
            if (!json_is_string(s)) {
                st = item_error(it, line, err, "%s: \"images\" must hold paths (strings)", where);
            } else if (!(it->files[k] = strdup(json_string_value(s)))) {
                st = mvl_fail(err, MVL_ERR_NOMEM, "out of memory");
            } else {
                it->n_files++;
            }
        }
        if (st == MVL_OK && prompt && !(it->prompt = strdup(json_string_value(prompt))))
            st = mvl_fail(err, MVL_ERR_NOMEM, "out of memory");
    }
    json_decref(o);
    return st;
}

/* A list of paths (one per line; blank lines and # comments skipped) or JSONL
 * requests, told apart by the first character that is not white space. */
static mvl_status read_list(const char *path, items *l, mvl_error *err) {
    char *buf;
    size_t len;
    mvl_status st = mvl_read_file(path, MAX_INPUT_BYTES, &buf, &len, err);
    if (st != MVL_OK) return st;
    const char *p = buf;
    while (p < buf + len && strchr(" \t\r\n", *p)) p++;
    const bool jsonl = p < buf + len && *p == '{';
    long line = 0;
    for (char *s = buf; st == MVL_OK && s < buf + len;) {
        char *nl = memchr(s, '\n', (size_t)(buf + len - s));
        char *end = nl ? nl : buf + len;
        line++;
        char *a = s, *b = end;
        while (a < b && strchr(" \t\r", *a)) a++;
        while (b > a && strchr(" \t\r", b[-1])) b--;
        if (b > a && *a != '#') {
            *b = '\0';
            st = jsonl ? parse_request(line, a, (size_t)(b - a), l, err) : add_path_item(l, a, a, line, err);
        }
        s = end + 1;
    }
    free(buf);
    return st;
}

/* Marks the later occurrences of an id as errors (each input keeps one record). */
static mvl_status mark_duplicates(items *l, mvl_error *err) {
    mvl_strmap seen;
    mvl_status st = mvl_strmap_init(&seen, l->n, err);
    for (size_t i = 0; st == MVL_OK && i < l->n; i++) {
        item *it = &l->v[i];
        if (it->error) continue;
        bool inserted;
        st = mvl_strmap_put(&seen, it->key, strlen(it->key), (int64_t)i, &inserted, err);
        if (st == MVL_OK && !inserted) {
            int64_t first = 0;
            mvl_strmap_get(&seen, it->key, strlen(it->key), &first);
            char msg[64];
            snprintf(msg, sizeof msg, "%ld", l->v[first].line);
            free(it->key);
            it->key = NULL;
            st = item_error(it, it->line, err, "duplicate id (first on line %s)", msg);
        }
    }
    mvl_strmap_free(&seen);
    return st;
}

/* ---- output ------------------------------------------------------------------ */

/* --resume: cuts a torn last line, then collects the keys of the records
 * already written. Keys are strdup'd into *keys (the map borrows them). */
static mvl_status resume_scan(const char *path, mvl_strmap *done, char ***keys, size_t *n_keys, mvl_error *err) {
    char *buf = NULL;
    size_t len = 0;
    struct stat sb;
    if (stat(path, &sb) != 0) return MVL_OK; /* nothing written yet */
    mvl_status st = mvl_read_file(path, MAX_INPUT_BYTES, &buf, &len, err);
    if (st != MVL_OK) return st;
    size_t whole = len;
    while (whole > 0 && buf[whole - 1] != '\n') whole--;
    if (whole < len) {
        if (truncate(path, (off_t)whole) != 0) {
            free(buf);
            return mvl_fail(err, MVL_ERR_IO, "%s: cannot cut the torn last line: %s", path, strerror(errno));
        }
        mvl_cli_log("batch: %s: dropped a torn last line (%zu bytes)\n", path, len - whole);
    }
    long line = 0;
    size_t cap = 0;
    for (char *s = buf; st == MVL_OK && s < buf + whole;) {
        char *nl = memchr(s, '\n', (size_t)(buf + whole - s));
        line++;
        json_t *o = json_loadb(s, (size_t)(nl - s), 0, NULL);
        json_t *id = json_object_get(o, "id"), *ln = json_object_get(o, "line");
        char *key = NULL;
        if (!o || !id) {
            st = mvl_fail(err, MVL_ERR_FORMAT, "%s: line %ld is not a batch record; not resuming", path, line);
        } else if (json_is_integer(ln)) {
            char k[32];
            snprintf(k, sizeof k, "#line %lld", (long long)json_integer_value(ln));
            key = strdup(k);
        } else {
            key = json_dumps(id, JSON_ENCODE_ANY | JSON_COMPACT);
        }
        json_decref(o);
        if (st == MVL_OK && !key) st = mvl_fail(err, MVL_ERR_NOMEM, "out of memory");
        if (st == MVL_OK && *n_keys == cap) {
            cap = cap ? cap * 2 : 256;
            char **v = realloc(*keys, cap * sizeof *v);
            if (!v) st = mvl_fail(err, MVL_ERR_NOMEM, "out of memory");
            else *keys = v;
        }
        if (st == MVL_OK) {
            (*keys)[(*n_keys)++] = key;
            bool inserted;
            st = mvl_strmap_put(done, key, strlen(key), 1, &inserted, err);
        } else {
            free(key);
        }
        s = nl + 1;
    }
    free(buf);
    return st;
}

/* One whole line in one write(), then to the disk: a crash never leaves a
 * record half written, except a torn tail that --resume cuts. */
static mvl_status write_record(int fd, const char *path, const mvl_strbuf *b, mvl_error *err) {
    if (b->oom) return mvl_fail(err, MVL_ERR_NOMEM, "out of memory");
    size_t off = 0;
    while (off < b->len) {
        ssize_t w = write(fd, b->p + off, b->len - off);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) return mvl_fail(err, MVL_ERR_IO, "%s: write failed: %s", path, strerror(errno));
        off += (size_t)w;
    }
    if (fdatasync(fd) != 0 && errno != EINVAL)
        return mvl_fail(err, MVL_ERR_IO, "%s: sync failed: %s", path, strerror(errno));
    return MVL_OK;
}

static void put_files(mvl_strbuf *b, const item *it) {
    mvl_strbuf_puts(b, ",\"file\":");
    if (it->n_files == 1) {
        mvl_strbuf_json(b, it->files[0], strlen(it->files[0]));
        return;
    }
    mvl_strbuf_puts(b, it->error && !it->n_files ? "null" : "[");
    if (it->error && !it->n_files) return;
    for (int k = 0; k < it->n_files; k++) {
        if (k) mvl_strbuf_puts(b, ",");
        mvl_strbuf_json(b, it->files[k], strlen(it->files[k]));
    }
    mvl_strbuf_puts(b, "]");
}

static void put_head(mvl_strbuf *b, const item *it) {
    mvl_strbuf_printf(b, "{\"id\":%s", it->id_json);
    if (it->line && it->key && it->key[0] == '#') mvl_strbuf_printf(b, ",\"line\":%ld", it->line);
    put_files(b, it);
}

/* ---- the preprocessing pipeline -------------------------------------------------- */

typedef struct slot {
    bool ready;
    mvl_status st;
    mvl_error err;
    int n;                                /* images prepared */
    mvl_image_input in[MVL_CLI_MAX_IMAGES];
    uint8_t *tiles[MVL_CLI_MAX_IMAGES];     /* [n] owned */
    double ms;                            /* decode + preprocess time */
} slot;

typedef struct pipeline {
    const mvl_model *m;
    const mvl_cli_image_prep *prep;
    item **work;       /* [n_work] the items to run, in order */
    size_t n_work;
    slot *slots;       /* [window] item k uses slots[k % window] */
    size_t window;
    size_t next;       /* next item a worker takes */
    size_t consumed;   /* items the main thread has finished with */
    bool stop;
    pthread_mutex_t mu;
    pthread_cond_t ready_cv, space_cv;
} pipeline;

static void slot_clear(slot *s) {
    for (int k = 0; k < s->n; k++) free(s->tiles[k]);
    s->n = 0;
    s->ready = false;
}

static void slot_fill(pipeline *p, const item *it, slot *s) {
    double t0 = mvl_cli_now_ms();
    s->st = MVL_OK;
    for (int k = 0; s->st == MVL_OK && k < it->n_files; k++) {
        s->st = mvl_cli_image_prepare(p->m, it->files[k], p->prep, &s->in[k], &s->tiles[k], &s->err);
        if (s->st == MVL_OK) s->n++;
    }
    s->ms = mvl_cli_now_ms() - t0;
}

static void *worker(void *arg) {
    pipeline *p = arg;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->stop && p->next < p->n_work && p->next >= p->consumed + p->window)
            pthread_cond_wait(&p->space_cv, &p->mu);
        if (p->stop || p->next >= p->n_work) break;
        size_t k = p->next++;
        pthread_mutex_unlock(&p->mu);
        slot *s = &p->slots[k % p->window];
        if (!p->work[k]->error) slot_fill(p, p->work[k], s);
        pthread_mutex_lock(&p->mu);
        s->ready = true;
        pthread_cond_broadcast(&p->ready_cv);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

/* ---- progress ---------------------------------------------------------------- */

typedef struct progress {
    bool tty;
    double t0, last;
    size_t total;
} progress;

static void progress_show(progress *pr, size_t done, size_t failed, bool final) {
    double now = mvl_cli_now_ms(), s = (now - pr->t0) / 1e3;
    double rate = s > 0 ? (double)done / s : 0, eta = rate > 0 ? (double)(pr->total - done) / rate : 0;
    if (pr->tty) {
        int width = 30, fill = pr->total ? (int)(width * done / pr->total) : width;
        fprintf(stderr, "\r[%.*s%*s] %zu/%zu  %.2f images/s  ETA %d:%02d  %zu failed ", fill,
                "##############################", width - fill, "", done, pr->total, rate, (int)eta / 60,
                (int)eta % 60, failed);
        if (final) fputc('\n', stderr);
    } else if (!final && now - pr->last >= 5000) {
        mvl_cli_log("batch: %zu/%zu done, %zu failed, %.2f images/s, ETA %.0f s\n", done, pr->total, failed, rate, eta);
        pr->last = now;
    }
}

/* ---- the command ------------------------------------------------------------- */

static volatile sig_atomic_t interrupted;

static void on_sigint(int sig) {
    (void)sig;
    interrupted = 1;
}

typedef struct runner {
    const mvl_cli_common *c;
    const mvl_model *m;
    const mvl_tokenizer *tok;
    mvl_seq *seq;
    int32_t *out; /* [max_tokens] */
    int fd;
    const char *out_path;
} runner;

/* Runs one request on its prepared images and writes its record. Returns
 * whether it succeeded; *err gets a write failure (fatal to the batch). */
static mvl_status run_item(runner *r, const item *it, slot *s, bool *ok, mvl_error *err) {
    const char *prompt = it->prompt ? it->prompt : r->c->prompt ? r->c->prompt : CAPTION_PROMPT;
    double t0 = mvl_cli_now_ms();
    mvl_error e = {0};
    mvl_status st = it->error ? MVL_ERR_ARG : s->st;
    if (st != MVL_OK && !it->error) e = s->err;
    int32_t *ids = NULL;
    size_t n = 0, n_out = 0;
    mvl_stop_reason why;
    mvl_cli_answer ans = {NULL, {0}, 0, MVL_OK, &e};
    mvl_seq_reset(r->seq);
    if (st == MVL_OK) st = mvl_cli_encode_prompt(r->tok, r->m, r->c->system, prompt, 0, s->in, s->n, &ids, &n, &e);
    if (st == MVL_OK) st = mvl_seq_append(r->seq, ids, n, s->in, (size_t)s->n, NULL, &e);
    if (st == MVL_OK) st = mvl_detok_init(r->tok, 1, &ans.detok, &e);
    if (st == MVL_OK) {
        mvl_generate_opts go = mvl_cli_common_generate_opts(r->c, r->tok);
        go.on_token = mvl_cli_answer_on_token;
        go.ctx = &ans;
        st = mvl_seq_generate(r->seq, &go, r->out, &n_out, &why, &e);
        if (st == MVL_OK) st = mvl_cli_answer_finish(&ans);
    }
    mvl_strbuf b = {0};
    put_head(&b, it);
    if (st == MVL_OK) {
        mvl_strbuf_puts(&b, ",\"prompt\":");
        mvl_strbuf_json(&b, prompt, strlen(prompt));
        mvl_strbuf_puts(&b, ",\"text\":");
        mvl_strbuf_json(&b, ans.text.p, ans.text.len);
        mvl_strbuf_printf(&b, ",\"tokens\":%zu,\"prompt_tokens\":%zu,\"ms\":%.1f,\"ms_preprocess\":%.1f}\n", n_out, n,
                          mvl_cli_now_ms() - t0 + s->ms, s->ms);
    } else {
        const char *msg = it->error ? it->error : e.msg;
        mvl_strbuf_puts(&b, ",\"error\":");
        mvl_strbuf_json(&b, msg, strlen(msg));
        mvl_strbuf_puts(&b, "}\n");
        if (r->c->verbose) mvl_cli_log("batch: %s failed: %s\n", it->key, msg);
    }
    *ok = st == MVL_OK;
    mvl_status wst = write_record(r->fd, r->out_path, &b, err);
    free(b.p);
    free(ans.text.p);
    mvl_detok_free(ans.detok);
    free(ids);
    return wst;
}

int mvl_cmd_batch(int argc, char **argv) {
    mvl_cli_common c;
    mvl_cli_option opts[MVL_CLI_COMMON_MAX + 4];
    const char *out_path = NULL;
    int resume = 0, overwrite = 0;
    long long workers = -1;
    int nopts = mvl_cli_common_options(&c, "TEXT  the request for folder and list inputs (default \"" CAPTION_PROMPT "\")",
                                       opts);
    opts[nopts++] = (mvl_cli_option){"-o", "--output", MVL_OPT_STR, &out_path, "OUT.jsonl  one record per input (required)"};
    opts[nopts++] = (mvl_cli_option){NULL, "--resume", MVL_OPT_FLAG, &resume,
                                     "continue OUT: skip the inputs it has a record for, cut a torn last line"};
    opts[nopts++] = (mvl_cli_option){NULL, "--overwrite", MVL_OPT_FLAG, &overwrite, "replace an existing OUT"};
    opts[nopts++] = (mvl_cli_option){NULL, "--workers", MVL_OPT_INT, &workers,
                                     "N  decode+preprocess threads ahead of the model (0: inline; default 2)"};
    mvl_cli_list pos = {0};
    int rc = mvl_cli_parse("batch", usage,
                           "Runs one request per input and appends one JSON line per input to OUT:\n"
                           "{\"id\",\"file\",\"prompt\",\"text\",\"tokens\",\"prompt_tokens\",\"ms\",\"ms_preprocess\"}, or\n"
                           "{\"id\",\"file\",\"error\"}. INPUT is a folder (recursive: JPEG/PNG found by content; files\n"
                           "named as images are taken too, so a broken one gets an error record), a text file of\n"
                           "image paths (one per line), or a JSONL file of {\"id\", \"image\"|\"images\", \"prompt\"}.\n"
                           "Exit 0: all succeeded; 3: some inputs failed; 130: interrupted (records whole).\n"
                           "--json prints a summary object on stdout.",
                           opts, nopts, argc, argv, &pos);
    if (rc >= 0) return rc;
    if (pos.n != 1) return mvl_cli_usage_error("batch", usage, "expected one INPUT, got %d", pos.n);
    if (!out_path) return mvl_cli_usage_error("batch", usage, "-o OUT.jsonl is required");
    if (resume && overwrite) return mvl_cli_usage_error("batch", usage, "--resume and --overwrite exclude each other");
    if (c.images.n) return mvl_cli_usage_error("batch", usage, "--image does not apply: the images come from INPUT");
    if (workers < -1 || workers > 64) return mvl_cli_usage_error("batch", usage, "--workers must be 0..64");
    if (workers < 0) workers = 2;
    if ((rc = mvl_cli_common_check("batch", usage, &c)) >= 0) return rc;
    const char *input = pos.items[0];

    mvl_error err = {0};
    items list = {0};
    mvl_strmap done = {0};
    char **done_keys = NULL;
    size_t n_done_keys = 0;
    item **work = NULL;
    size_t n_work = 0, skipped = 0, n_ok = 0, n_failed = 0;
    mvl_model *m = NULL;
    mvl_tokenizer *tok = NULL;
    runner r = {.c = &c, .fd = -1, .out_path = out_path};
    pipeline p = {0};
    pthread_t threads[64];
    int n_threads = 0;
    mvl_cli_image_prep prep = mvl_cli_common_image_prep(&c);
    mvl_model_opts mo = c.model_opts;
    double t0 = mvl_cli_now_ms();

    struct stat sb;
    mvl_status st = MVL_OK;
    if (stat(input, &sb) != 0) st = mvl_fail(&err, MVL_ERR_IO, "%s: cannot open: %s", input, strerror(errno));
    else if (S_ISDIR(sb.st_mode)) st = read_folder(input, &list, &err);
    else st = read_list(input, &list, &err);
    if (st == MVL_OK) st = mark_duplicates(&list, &err);
    if (st == MVL_OK) st = mvl_strmap_init(&done, 64, &err);
    if (st == MVL_OK && resume) st = resume_scan(out_path, &done, &done_keys, &n_done_keys, &err);
    if (st == MVL_OK && !resume && !overwrite && stat(out_path, &sb) == 0 && sb.st_size > 0)
        st = mvl_fail(&err, MVL_ERR_IO, "%s: exists; --resume continues it, --overwrite replaces it", out_path);
    if (st == MVL_OK && !(work = mvl_malloc((list.n ? list.n : 1) * sizeof *work, &err))) st = MVL_ERR_NOMEM;
    for (size_t i = 0; st == MVL_OK && i < list.n; i++) {
        int64_t v;
        if (mvl_strmap_get(&done, list.v[i].key, strlen(list.v[i].key), &v)) skipped++;
        else work[n_work++] = &list.v[i];
    }
    if (st == MVL_OK) {
        r.fd = open(out_path, O_WRONLY | O_CREAT | O_APPEND | (resume ? 0 : O_TRUNC) | O_CLOEXEC, 0644);
        if (r.fd < 0) st = mvl_fail(&err, MVL_ERR_IO, "%s: cannot open for writing: %s", out_path, strerror(errno));
    }
    if (st == MVL_OK && (c.verbose || skipped))
        mvl_cli_log("batch: %zu inputs, %zu already in %s, %zu to run\n", list.n, skipped, out_path, n_work);
    if (st == MVL_OK && n_work) {
        st = mvl_model_load(c.dir, &mo, &m, &err);
        if (st == MVL_OK) st = mvl_tokenizer_load(c.dir, &tok, &err);
        if (st == MVL_OK) st = mvl_seq_init(m, &r.seq, &err);
        if (st == MVL_OK && !(r.out = mvl_malloc((size_t)c.max_tokens * sizeof *r.out, &err))) st = MVL_ERR_NOMEM;
    }
    r.m = m;
    r.tok = tok;
    p = (pipeline){.m = m, .prep = &prep, .work = work, .n_work = n_work, .window = workers ? 2 * (size_t)workers : 1};
    if (st == MVL_OK && !(p.slots = mvl_calloc(p.window, sizeof *p.slots, &err))) st = MVL_ERR_NOMEM;
    pthread_mutex_init(&p.mu, NULL);
    pthread_cond_init(&p.ready_cv, NULL);
    pthread_cond_init(&p.space_cv, NULL);

    /* SIGINT: the record under way completes; a second one kills. Workers
     * never see it, so it always reaches the main thread. */
    struct sigaction sa = {.sa_handler = on_sigint, .sa_flags = SA_RESTART | SA_RESETHAND}, old_sa;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old_sa);
    sigset_t block, prev;
    sigemptyset(&block);
    sigaddset(&block, SIGINT);
    pthread_sigmask(SIG_BLOCK, &block, &prev);
    for (; st == MVL_OK && n_work && n_threads < workers; n_threads++)
        if (pthread_create(&threads[n_threads], NULL, worker, &p) != 0) {
            st = mvl_fail(&err, MVL_ERR_NOMEM, "cannot start a worker thread");
            break;
        }
    pthread_sigmask(SIG_SETMASK, &prev, NULL);

    progress pr = {isatty(STDERR_FILENO), mvl_cli_now_ms(), mvl_cli_now_ms(), n_work};
    size_t k = 0;
    for (; st == MVL_OK && k < n_work && !interrupted; k++) {
        slot *s = &p.slots[k % p.window];
        if (workers == 0) {
            if (!work[k]->error) slot_fill(&p, work[k], s);
        } else {
            pthread_mutex_lock(&p.mu);
            while (!s->ready) pthread_cond_wait(&p.ready_cv, &p.mu);
            pthread_mutex_unlock(&p.mu);
        }
        bool ok;
        st = run_item(&r, work[k], s, &ok, &err);
        if (ok) n_ok++;
        else n_failed++;
        pthread_mutex_lock(&p.mu);
        slot_clear(s);
        p.consumed++;
        pthread_cond_broadcast(&p.space_cv);
        pthread_mutex_unlock(&p.mu);
        progress_show(&pr, k + 1, n_failed, false);
    }
    pthread_mutex_lock(&p.mu);
    p.stop = true;
    pthread_cond_broadcast(&p.space_cv);
    pthread_mutex_unlock(&p.mu);
    for (int i = 0; i < n_threads; i++) pthread_join(threads[i], NULL);
    sigaction(SIGINT, &old_sa, NULL);
    if (n_work && st == MVL_OK) progress_show(&pr, k, n_failed, true);

    double secs = (mvl_cli_now_ms() - t0) / 1e3;
    if (st == MVL_OK) {
        mvl_cli_log("batch: %zu succeeded, %zu failed, %zu skipped (already done), %zu left%s; %.1f s, %.2f images/s\n",
                    n_ok, n_failed, skipped, n_work - k, interrupted ? " (interrupted)" : "", secs,
                    secs > 0 ? (double)(n_ok + n_failed) / secs : 0.0);
        if (c.json)
            printf("{\"inputs\":%zu,\"succeeded\":%zu,\"failed\":%zu,\"skipped\":%zu,\"left\":%zu,\"interrupted\":%s,"
                   "\"seconds\":%.3f,\"images_per_s\":%.3f}\n",
                   list.n, n_ok, n_failed, skipped, n_work - k, interrupted ? "true" : "false", secs,
                   secs > 0 ? (double)(n_ok + n_failed) / secs : 0.0);
    }
    for (size_t i = 0; p.slots && i < p.window; i++) slot_clear(&p.slots[i]);
    free(p.slots);
    pthread_mutex_destroy(&p.mu);
    pthread_cond_destroy(&p.ready_cv);
    pthread_cond_destroy(&p.space_cv);
    if (r.fd >= 0 && close(r.fd) != 0 && st == MVL_OK)
        st = mvl_fail(&err, MVL_ERR_IO, "%s: close failed: %s", out_path, strerror(errno));
    free(r.out);
    mvl_seq_free(r.seq);
    mvl_tokenizer_free(tok);
    mvl_model_free(m);
    free(work);
    items_free(&list);
    mvl_strmap_free(&done);
    for (size_t i = 0; i < n_done_keys; i++) free(done_keys[i]);
    free(done_keys);
    rc = st != MVL_OK ? mvl_cli_fail(&err) : interrupted ? MVL_EXIT_INTERRUPTED : n_failed ? MVL_EXIT_PARTIAL : MVL_EXIT_OK;
    mvl_cli_log_close();
    return rc;
}
