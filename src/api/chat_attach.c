/*
 * chat_attach.c — attachments of chat messages (API.md §7.7, issue 15 item 2): a workspace file
 * (by path, its preview or all of it) or an image given as a `data:` URL.
 *
 * Invariants:
 * - Everything a request names is checked before anything is written: a hostile item (too big,
 *   wrong type, a path out of the workspace, a bad data URL) fails the request with nothing
 *   stored.
 * - Content is stored once, content-addressed, under <data dir>/attachments/<2 hex>/<sha256>
 *   (written to a temporary name, then renamed: a reader never sees half a file). What an
 *   attachment is (id, type, path or file name, size, tokens, hash) is a `chat_message` event
 *   {attaches: <message id>, attachments: […]} of the session, like the rest of the chat.
 * - Sizes are capped (ATT_MAX_BYTES each, 413 above); the type is judged by the bytes, never by
 *   the name or the declared type alone: a file must be UTF-8 text, an image's declared type must
 *   match its signature.
 * - The agent gets what is attached as text in its prompt; images only when its CLI can read an
 *   image from a path in the prompt (claude-code, gemini; scripted, for tests), else 422.
 */
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../os/os.h"
#include "../workspace/workspace.h"
#include "chat_int.h"

#define ATT_MAX_BYTES (5 * 1024 * 1024) /* per attachment, decoded */
#define ATT_PER_REQUEST 8
#define ATT_BODY_MAX (ATT_MAX_BYTES / 3 * 4 + 256 * 1024) /* one image as base64, and JSON */
#define ATT_FILENAME_MAX 255
#define PREVIEW_LINES_DEFAULT 50
#define PREVIEW_LINES_MAX 100000

struct item {
    const json_t *req;
    char *data; /* the content (owned) */
    size_t len;
    const char *type;      /* "file" | "image" */
    const char *mime;      /* image: the checked type; file: text/plain */
    char path[WS_PATH_MAX + 1];
    const char *filename;  /* image, may be NULL */
    bool full;             /* file: the whole text goes to the agent and the answer */
    int64_t preview_lines;
    char sha[SHA256_DIGEST_LENGTH * 2 + 1];
};

static void items_clear(struct item *it, size_t n) {
    for (size_t i = 0; i < n; i++)
        free(it[i].data);
}

static bool utf8_text(const char *s, size_t n) {
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)s[i];
        if (c == 0)
            return false;
        size_t k = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3
                             : (c & 0xF8) == 0xF0 ? 4 : 0;
        if (!k || (k == 2 && c < 0xC2) || i + k > n)
            return false;
        for (size_t j = 1; j < k; j++)
            if (((unsigned char)s[i + j] & 0xC0) != 0x80)
                return false;
        if (k == 3) { /* overlong forms and UTF-16 surrogates */
            unsigned char d = (unsigned char)s[i + 1];
            if ((c == 0xE0 && d < 0xA0) || (c == 0xED && d >= 0xA0))
                return false;
        } else if (k == 4) {
            unsigned char d = (unsigned char)s[i + 1];
            if ((c == 0xF0 && d < 0x90) || c > 0xF4 || (c == 0xF4 && d >= 0x90))
                return false;
        }
        i += k;
    }
    return true;
}

/* The first `lines` lines of text (all of it when it has no more). */
static size_t preview_len(const char *s, size_t n, int64_t lines) {
    size_t i = 0;
    for (int64_t l = 0; i < n && l < lines; l++) {
        const char *nl = memchr(s + i, '\n', n - i);
        i = nl ? (size_t)(nl - s) + 1 : n;
    }
    return i;
}

/* Tokens of a text for the context window. */
static int64_t text_tokens(const char *s, size_t n) {
    return tokens_count(s, n);
}

static const struct {
    const char *mime;
    const char *magic;
    size_t len;
} image_types[] = {
    {"image/png", "\x89PNG\r\n\x1a\n", 8},
    {"image/jpeg", "\xff\xd8\xff", 3},
    {"image/gif", "GIF8", 4},
    {"image/webp", "RIFF", 4}, /* and "WEBP" at 8, checked below */
};

static const char *const image_agents[] = {"claude-code", "gemini", "scripted", NULL};

/* ---- checking what the request names --------------------------------------------------------- */

static int check_file(struct item *it, const char *root_path, const char *f, struct ah_problem *p) {
    const char *path = json_string_value(json_object_get(it->req, "file_path"));
    json_t *full = json_object_get(it->req, "include_full_content");
    json_t *pl = json_object_get(it->req, "preview_lines");
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)it->req, key, v) {
        if (strcmp(key, "type") && strcmp(key, "file_path") && strcmp(key, "include_full_content") &&
            strcmp(key, "preview_lines"))
            problem_field(p, f, "has an unknown field %s", key);
    }
    if (!path || ws_path_normalise(path, json_string_length(json_object_get(it->req, "file_path")),
                                   it->path) < 0 || !it->path[0])
        return problem_field(p, f, "file_path must be a path inside the workspace"), AH_E_INVAL;
    if (full && !json_is_boolean(full))
        problem_field(p, f, "include_full_content must be a boolean");
    it->preview_lines = PREVIEW_LINES_DEFAULT;
    if (pl && (!json_is_integer(pl) || json_integer_value(pl) < 0 ||
               json_integer_value(pl) > PREVIEW_LINES_MAX))
        problem_field(p, f, "preview_lines must be an integer from 0 to %d", PREVIEW_LINES_MAX);
    else if (pl)
        it->preview_lines = json_integer_value(pl);
    if (p->code)
        return AH_E_INVAL;
    it->full = json_is_true(full);
    it->type = "file";
    it->mime = "text/plain";
    if (!root_path)
        return problem_set(p, AH_E_CONFLICT, "the session has no workspace yet");
    int root = open(root_path, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (root < 0)
        return problem_set(p, AH_E_GONE, "the session's workspace is gone");
    int fd = open_beneath(root, it->path, O_RDONLY | O_NOCTTY | O_NONBLOCK, 0, true);
    int e = errno;
    close(root);
    if (fd < 0)
        return e == ENOENT || e == ENOTDIR
                   ? problem_set(p, AH_E_NOTFOUND, "%s: no such file in the workspace", it->path)
                   : e == EXDEV || e == ELOOP
                         ? problem_set(p, AH_E_FORBIDDEN, "%s leads outside the workspace or "
                                                          "through a symbolic link", it->path)
                         : problem_set(p, ah_err_from_errno(e), "%s: %s", it->path, strerror(e));
    struct stat st;
    int rc = 0;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))
        rc = problem_set(p, AH_E_INVAL, "%s is not a regular file", it->path);
    else if (st.st_size > ATT_MAX_BYTES)
        rc = problem_set(p, AH_E_TOOLARGE, "%s is %lld bytes; an attachment is at most %d bytes",
                         it->path, (long long)st.st_size, ATT_MAX_BYTES);
    if (rc == 0 && !(it->data = malloc((size_t)st.st_size + 1)))
        rc = problem_set(p, AH_E_NOMEM, "out of memory");
    size_t n = 0;
    while (rc == 0 && n <= (size_t)st.st_size) { /* it may grow meanwhile: read to the cap + 1 */
        ssize_t r = read(fd, it->data + n, (size_t)st.st_size + 1 - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            rc = problem_set(p, ah_err_from_errno(errno), "cannot read %s", it->path);
        if (r <= 0)
            break;
        n += (size_t)r;
    }
    close(fd);
    if (rc == 0 && n > (size_t)st.st_size)
        rc = problem_set(p, AH_E_CONFLICT, "%s is changing; try again", it->path);
    if (rc == 0 && !utf8_text(it->data, n))
        rc = problem_set(p, AH_E_MEDIATYPE,
                         "%s is not UTF-8 text; attach images as a data: URL", it->path);
    it->len = n;
    return rc;
}

static int check_image(struct item *it, const char *agent, const char *f, struct ah_problem *p) {
    json_t *url = json_object_get(it->req, "data_url");
    json_t *name = json_object_get(it->req, "filename");
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)it->req, key, v) {
        if (strcmp(key, "type") && strcmp(key, "data_url") && strcmp(key, "filename"))
            problem_field(p, f, "has an unknown field %s", key);
    }
    if (name && (!json_is_string(name) || !json_string_length(name) ||
                 json_string_length(name) > ATT_FILENAME_MAX ||
                 strlen(json_string_value(name)) != json_string_length(name) ||
                 strchr(json_string_value(name), '/')))
        problem_field(p, f, "filename must be a file name (no '/') of at most %d bytes",
                      ATT_FILENAME_MAX);
    const char *s = json_string_value(url);
    if (!s || strncmp(s, "data:", 5) != 0)
        problem_field(p, f, "data_url must be a data: URL");
    if (p->code)
        return AH_E_INVAL;
    const char *comma = strchr(s, ',');
    const char *semi = comma ? memchr(s, ';', (size_t)(comma - s)) : NULL;
    if (!comma || !semi || (size_t)(comma - semi) != 7 || strncmp(semi, ";base64", 7) != 0)
        return problem_field(p, f, "data_url must be data:<image type>;base64,<data>"), AH_E_INVAL;
    size_t mlen = (size_t)(semi - (s + 5));
    it->mime = NULL;
    for (size_t i = 0; i < sizeof(image_types) / sizeof(image_types[0]); i++)
        if (strlen(image_types[i].mime) == mlen && !strncmp(s + 5, image_types[i].mime, mlen))
            it->mime = image_types[i].mime;
    if (!it->mime)
        return problem_set(p, AH_E_MEDIATYPE, "%.*s is not an image type this server takes "
                                              "(image/png, image/jpeg, image/gif, image/webp)",
                           (int)(mlen > 64 ? 64 : mlen), s + 5);
    const char *b64 = comma + 1;
    size_t blen = json_string_length(url) - (size_t)(b64 - s);
    if (blen == 0 || blen % 4)
        return problem_field(p, f, "data_url: the base64 data is malformed"), AH_E_INVAL;
    if (blen / 4 * 3 > ATT_MAX_BYTES + 2)
        return problem_set(p, AH_E_TOOLARGE, "the image is over %d bytes", ATT_MAX_BYTES);
    for (size_t i = 0; i < blen; i++) { /* EVP_DecodeBlock skips blanks; a URL has none */
        char c = b64[i];
        bool pad = c == '=' && i >= blen - 2 && (i == blen - 1 || b64[blen - 1] == '=');
        if (!pad && !((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
                      (c >= '0' && c <= '9') || c == '+' || c == '/'))
            return problem_field(p, f, "data_url: the base64 data is malformed"), AH_E_INVAL;
    }
    if (!(it->data = malloc(blen / 4 * 3 + 1)))
        return problem_set(p, AH_E_NOMEM, "out of memory");
    int n = EVP_DecodeBlock((unsigned char *)it->data, (const unsigned char *)b64, (int)blen);
    if (n < 0)
        return problem_field(p, f, "data_url: the base64 data is malformed"), AH_E_INVAL;
    it->len = (size_t)n - (b64[blen - 1] == '=') - (b64[blen - 2] == '=');
    if (it->len > ATT_MAX_BYTES)
        return problem_set(p, AH_E_TOOLARGE, "the image is %zu bytes; an attachment is at most "
                                             "%d bytes", it->len, ATT_MAX_BYTES);
    bool ok = false;
    for (size_t i = 0; i < sizeof(image_types) / sizeof(image_types[0]); i++)
        if (!strcmp(image_types[i].mime, it->mime))
            ok = it->len >= image_types[i].len &&
                 !memcmp(it->data, image_types[i].magic, image_types[i].len) &&
                 (strcmp(it->mime, "image/webp") ||
                  (it->len >= 12 && !memcmp(it->data + 8, "WEBP", 4)));
    if (!ok)
        return problem_set(p, AH_E_MEDIATYPE, "the data is not a %s image", it->mime);
    bool takes = false;
    for (const char *const *a = image_agents; *a; a++)
        takes |= !strcmp(*a, agent);
    if (!takes)
        return problem_set(p, AH_E_UNSUPPORTED,
                           "the %s agent cannot take images in a prompt; attach text files",
                           agent);
    it->type = "image";
    it->filename = json_string_value(name);
    return 0;
}

/* ---- storing --------------------------------------------------------------------------------- */

static int blob_path(struct api_ctx *ctx, const char *sha, char *out, size_t size) {
    int n = snprintf(out, size, "%s/attachments/%.2s/%s", exec_data_dir(ctx->exec), sha, sha);
    return n > 0 && (size_t)n < size ? 0 : AH_E_TOOLARGE;
}

static int store_blob(struct api_ctx *ctx, struct item *it) {
    unsigned char md[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)it->data, it->len, md);
    for (int i = 0; i < SHA256_DIGEST_LENGTH; i++)
        snprintf(it->sha + 2 * i, 3, "%02x", md[i]);
    char path[4400], dir[4400], tmp[4400];
    if (blob_path(ctx, it->sha, path, sizeof(path)) < 0)
        return AH_E_TOOLARGE;
    if (access(path, F_OK) == 0)
        return 0; /* the same content is there already */
    snprintf(dir, sizeof(dir), "%s/attachments/%.2s", exec_data_dir(ctx->exec), it->sha);
    char ulid[ULID_LEN + 1];
    ulid_new(ulid);
    snprintf(tmp, sizeof(tmp), "%s/.tmp-%s", dir, ulid);
    int rc = make_dirs(dir, 0700);
    if (rc == 0)
        rc = write_file(tmp, it->data, it->len, 0600);
    if (rc == 0 && rename(tmp, path) < 0) {
        rc = ah_err_from_errno(errno);
        unlink(tmp);
    }
    return rc;
}

/* The attachment as recorded (no content: that is in the blob). */
static json_t *meta_json(const struct item *it, int64_t now) {
    char id[ULID_LEN + 8], ts[TIME_RFC3339_LEN + 1];
    ulid_new_prefixed("att", id, sizeof(id));
    time_format(now, ts);
    bool file = !strcmp(it->type, "file");
    size_t shown = file && !it->full ? preview_len(it->data, it->len, it->preview_lines) : it->len;
    json_t *m = json_pack("{s:s, s:s, s:s, s:I, s:I, s:s, s:s}", "id", id, "type", it->type,
                          "mime_type", it->mime, "size_bytes", (json_int_t)it->len,
                          "token_count",
                          (json_int_t)(file ? text_tokens(it->data, shown) : tokens_image(it->data, it->len)),
                          "sha256", it->sha, "created_at", ts);
    if (!m)
        return NULL;
    if (file) {
        json_object_set_new(m, "file_path", json_string(it->path));
        json_object_set_new(m, "include_full_content", json_boolean(it->full));
        if (!it->full)
            json_object_set_new(m, "preview_lines", json_integer(it->preview_lines));
        json_object_set_new(m, "estimated", json_true()); /* D39: o200k_base, exact only for
                                                             OpenAI models */
    } else {
        if (it->filename)
            json_object_set_new(m, "filename", json_string(it->filename));
        json_object_set_new(m, "estimated", json_true());
    }
    return m;
}

static int append_delivery(struct ah_buf *b, const struct item *it, const char *blob) {
    if (!strcmp(it->type, "image"))
        return ah_buf_printf(b, "\n[attached image %s: %s]", it->filename ? it->filename : "",
                             blob);
    size_t shown = it->full ? it->len : preview_len(it->data, it->len, it->preview_lines);
    int rc = ah_buf_printf(b, "\n[attached file %s%s]\n", it->path,
                           shown < it->len ? " (first lines)" : "");
    return rc ? rc : ah_buf_append(b, it->data, shown);
}

/* The attachment as answered: the record plus its content (a file's text as attached; an image's
 * bytes are at content_url). */
static json_t *answer_json(struct api_ctx *ctx, const char *sid, const char *mid, json_t *meta) {
    json_t *a = json_deep_copy(meta);
    if (!a)
        return NULL;
    char url[512];
    snprintf(url, sizeof(url), "/api/v1/sessions/%s/chat/messages/%s/attachments/%s/content", sid,
             mid, json_string_value(json_object_get(meta, "id")));
    json_object_set_new(a, "content_url", json_string(url));
    json_object_set_new(a, "content", json_null());
    if (strcmp(json_string_value(json_object_get(meta, "type")), "file"))
        return a;
    char path[4400];
    char *data = NULL;
    size_t len = 0;
    if (blob_path(ctx, json_string_value(json_object_get(meta, "sha256")), path, sizeof(path)) ==
            0 &&
        read_file(path, ATT_MAX_BYTES, &data, &len) == 0) {
        json_t *full = json_object_get(meta, "include_full_content");
        size_t shown = json_is_true(full)
                           ? len
                           : preview_len(data, len,
                                         json_integer_value(json_object_get(meta, "preview_lines")));
        json_object_set_new(a, "content", json_stringn(data, shown));
        free(data);
    }
    return a;
}

/* ---- routes ---------------------------------------------------------------------------------- */

static void post_attachments(struct http_request *req, struct http_response *res) {
    struct api_ctx *ctx = api_ready(req, res);
    if (!ctx)
        return;
    AH_AUTO(json_decrefp) json_t *body = api_body(req, res, false);
    if (!body)
        return;
    struct ah_problem p = {0};
    json_t *list = json_object_get(body, "attachments");
    static const char *const known[] = {"attachments", NULL};
    api_only_members(body, known, &p);
    if (!json_is_array(list) || !json_array_size(list) || json_array_size(list) > ATT_PER_REQUEST)
        problem_field(&p, "attachments", "must be an array of 1 to %d attachments",
                      ATT_PER_REQUEST);
    if (http_fail(req, res, &p))
        return;
    const char *tenant = NULL;
    AH_AUTO(json_decrefp) json_t *msgs = NULL;
    AH_AUTO(session_row_freep) struct session_row *row = NULL;
    json_t *m = chat_load_message(ctx, req, res, &tenant, &msgs, &row);
    if (!m)
        return;
    if (strcmp(json_string_value(json_object_get(m, "role")), "user")) {
        http_error(req, res, AH_E_CONFLICT, "attachments go on the user's messages");
        return;
    }
    if (session_status_terminal(row->status)) {
        http_error(req, res, AH_E_GONE, "the session has ended (%s)",
                   session_status_name(row->status));
        return;
    }
    struct item items[ATT_PER_REQUEST] = {0};
    size_t n = json_array_size(list);
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        char f[32];
        snprintf(f, sizeof(f), "attachments[%zu]", i);
        items[i].req = json_array_get(list, i);
        const char *type = json_string_value(json_object_get(items[i].req, "type"));
        if (!json_is_object(items[i].req) || !type) {
            problem_field(&p, f, "must be an object with type file or image");
            rc = AH_E_INVAL;
        } else if (!strcmp(type, "file")) {
            rc = check_file(&items[i], row->workspace_path, f, &p);
        } else if (!strcmp(type, "image")) {
            rc = check_image(&items[i], row->agent_type, f, &p);
        } else {
            problem_field(&p, f, "type must be file or image");
            rc = AH_E_INVAL;
        }
    }
    if (rc < 0 || p.code) {
        items_clear(items, n);
        if (!p.code)
            problem_set(&p, rc, "cannot attach");
        http_fail(req, res, &p);
        return;
    }
    const char *mid = json_string_value(json_object_get(m, "id"));
    json_t *metas = json_array();
    struct ah_buf text = {0};
    rc = metas ? ah_buf_printf(&text, "[attachments for %s]", mid) : AH_E_NOMEM;
    int64_t now = time_now_ms();
    for (size_t i = 0; i < n && rc == 0; i++) {
        char blob[4400];
        rc = store_blob(ctx, &items[i]);
        if (rc == 0)
            rc = blob_path(ctx, items[i].sha, blob, sizeof(blob));
        if (rc == 0)
            rc = json_array_append_new(metas, meta_json(&items[i], now)) < 0 ? AH_E_NOMEM : 0;
        if (rc == 0)
            rc = append_delivery(&text, &items[i], blob);
    }
    items_clear(items, n);
    AH_AUTO(json_decrefp) json_t *ev = rc == 0 ? json_pack("{s:s, s:s, s:s, s:O}", "type",
                                                          "chat_message", "role", "user",
                                                          "attaches", mid, "attachments", metas)
                                               : NULL;
    if (rc < 0 || !ev) {
        json_decref(metas);
        ah_buf_clear(&text);
        http_error(req, res, rc < 0 ? rc : AH_E_NOMEM, "cannot store the attachments");
        return;
    }
    rc = chat_send(ctx, req, res, tenant, row->id, ev, text.p, NULL);
    ah_buf_clear(&text);
    if (rc < 0) {
        json_decref(metas);
        return;
    }
    json_t *out = json_array(), *v;
    size_t i;
    json_array_foreach(metas, i, v) json_array_append_new(out, answer_json(ctx, row->id, mid, v));
    json_decref(metas);
    http_json(req, res, 201, json_pack("{s:s, s:o}", "id", mid, "attachments", out));
}

static void attach_i(struct http_request *req, struct http_response *res) {
    api_idempotent(req, res, post_attachments);
}

/* The {attachmentId} attachment of the message; NULL after answering. */
static json_t *find_attachment(struct http_request *req, struct http_response *res, json_t *m) {
    const char *aid = http_param(req, "attachmentId");
    size_t i;
    json_t *a;
    json_array_foreach(json_object_get(m, "attachments"), i, a) {
        if (!strcmp(json_string_value(json_object_get(a, "id")), aid))
            return a;
    }
    http_error(req, res, AH_E_NOTFOUND, "no attachment %s on message %s", aid,
               http_param(req, "messageId"));
    return NULL;
}

static void get_attachment(struct http_request *req, struct http_response *res) {
    struct api_ctx *ctx = api_ready(req, res);
    if (!ctx)
        return;
    const char *tenant = NULL;
    AH_AUTO(json_decrefp) json_t *msgs = NULL;
    json_t *m = chat_load_message(ctx, req, res, &tenant, &msgs, NULL);
    json_t *a = m ? find_attachment(req, res, m) : NULL;
    if (a)
        http_json(req, res, 200,
                  answer_json(ctx, http_param(req, "id"), http_param(req, "messageId"), a));
}

/* The attachment's bytes, sent from the stored file (never read whole into memory). */
static void get_attachment_content(struct http_request *req, struct http_response *res) {
    struct api_ctx *ctx = api_ready(req, res);
    if (!ctx)
        return;
    const char *tenant = NULL;
    AH_AUTO(json_decrefp) json_t *msgs = NULL;
    json_t *m = chat_load_message(ctx, req, res, &tenant, &msgs, NULL);
    json_t *a = m ? find_attachment(req, res, m) : NULL;
    if (!a)
        return;
    char path[4400];
    int fd = -1;
    struct stat st;
    if (blob_path(ctx, json_string_value(json_object_get(a, "sha256")), path, sizeof(path)) < 0 ||
        (fd = open(path, O_RDONLY | O_CLOEXEC)) < 0 || fstat(fd, &st) < 0) {
        if (fd >= 0)
            close(fd);
        http_error(req, res, AH_E_GONE, "the attachment's content is no longer stored");
        return;
    }
    const char *mime = json_string_value(json_object_get(a, "mime_type"));
    res->status = 200;
    res->content_type = !strcmp(mime, "text/plain") ? "text/plain; charset=utf-8"
                        : !strcmp(mime, "image/png")  ? "image/png"
                        : !strcmp(mime, "image/jpeg") ? "image/jpeg"
                        : !strcmp(mime, "image/gif")  ? "image/gif"
                                                      : "image/webp";
    http_header_add(req, res, "X-Content-Type-Options", "nosniff");
    res->has_file = true;
    res->file_fd = fd;
    res->file_size = (uint64_t)st.st_size;
}

static void delete_attachment(struct http_request *req, struct http_response *res) {
    struct api_ctx *ctx = api_ready(req, res);
    if (!ctx)
        return;
    const char *tenant = NULL;
    AH_AUTO(json_decrefp) json_t *msgs = NULL;
    json_t *m = chat_load_message(ctx, req, res, &tenant, &msgs, NULL);
    json_t *a = m ? find_attachment(req, res, m) : NULL;
    if (!a)
        return;
    AH_AUTO(json_decrefp) json_t *ev = json_pack("{s:s, s:s, s:{s:O, s:O}}", "type",
                                                 "chat_message", "role", "user", "detaches",
                                                 "message", json_object_get(m, "id"),
                                                 "attachment", json_object_get(a, "id"));
    if (chat_send(ctx, req, res, tenant, http_param(req, "id"), ev, NULL, NULL) < 0)
        return;
    res->status = 204;
}

int chat_attach_register(struct router *r, struct api_ctx *ctx) {
    const char *base = "/api/v1/sessions/{id}/chat/messages/{messageId}/attachments";
    char one[128], content[160];
    snprintf(one, sizeof(one), "%s/{attachmentId}", base);
    snprintf(content, sizeof(content), "%s/{attachmentId}/content", base);
    int rc = 0;
    rc |= router_add(r, "POST", base, attach_i, ctx, 0, ATT_BODY_MAX);
    rc |= router_add(r, "GET", one, get_attachment, ctx, 0, 0);
    rc |= router_add(r, "DELETE", one, delete_attachment, ctx, 0, 0);
    rc |= router_add(r, "GET", content, get_attachment_content, ctx, 0, 0);
    return rc ? AH_E_NOMEM : 0;
}
