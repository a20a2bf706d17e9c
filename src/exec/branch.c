/*
 * branch.c — provisioning a branch session (API.md §7.8): its workspace starts as a snapshot of
 * its parent, and its agent starts with the parent's conversation up to that point.
 *
 * Workspace: the branch's object store borrows the parent's objects (git alternates) and knows
 * the branch point by name. Nothing is copied into the branch's store: it holds only what the
 * branch itself changes. <data>/workspaces/<id> is then, where this process may mount one
 * (D34), an overlay (provider `overlay`): the branch point written out once under
 * <data>/layers/<snap> as a lower layer shared by every branch from that point, the branch's
 * own changes in <data>/sessions/<id>/overlay; the mount is in the server's mount namespace (the
 * server reads the workspace, and the sandbox binds the same path), outlives a restart of the
 * server and is made again at start after a reboot (branch_remount_all); it is unmounted
 * before the workspace is deleted (branch_release). Its base snapshot is the branch point's
 * tree, recorded without reading a file, with the layer's stat cache adopted. Where the
 * kernel refuses the mount (no privilege, no overlayfs; logged once) or AH_BRANCH_OVERLAY=0,
 * the snapshot is written out file by file instead (provider `snapshot`), seeding the stat
 * cache so its base snapshot hashes nothing either.
 *
 * Transcript: the branch's first events are the parent's 1..k (copied by the store when the
 * branch was made); they are written to <data>/sessions/<id>/transcript.jsonl. How the agent
 * receives them depends on the agent:
 *   - scripted: follows its scenario; the injected message is its prompt;
 *   - a CLI that resumes its own saved conversations (claude-code, codex): resume.json holds the
 *     parent's first prompt and events 1..k, from which `ah agent start --resume-from` writes
 *     the CLI's saved conversation and resumes it with the injected message as the new turn;
 *   - any other: the transcript as text before the new message in its prompt file.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../workspace/workspace.h"
#include "executor.h"

#define TRANSCRIPT_EVENTS 5000           /* events written to the transcript at most */
#define TRANSCRIPT_TEXT (64u * 1024)     /* of which this much text goes into a prompt */

/* One line of readable transcript for an event, or nothing for events an agent need not see. */
static void line_of(struct ah_buf *b, const json_t *e) {
    const char *type = json_string_value(json_object_get(e, "type"));
    if (!type)
        return;
    const char *s;
    if (!strcmp(type, "thought") && (s = json_string_value(json_object_get(e, "thought"))))
        (void)ah_buf_printf(b, "assistant (thinking): %s\n", s);
    else if (!strcmp(type, "log") && (s = json_string_value(json_object_get(e, "message"))))
        (void)ah_buf_printf(b, "assistant: %s\n", s);
    else if (!strcmp(type, "chat_message") &&
             (s = json_string_value(json_object_get(e, "content"))))
        (void)ah_buf_printf(b, "%s: %s\n",
                            json_string_value(json_object_get(e, "role")) ?: "assistant", s);
    else if (!strcmp(type, "tool_use") &&
             strcmp(json_string_value(json_object_get(e, "status")) ?: "", "running")) {
        char *args = json_dumps(json_object_get(e, "tool_args"), JSON_COMPACT);
        (void)ah_buf_printf(b, "tool call: %s %s\n",
                            json_string_value(json_object_get(e, "tool_name")) ?: "?",
                            args ? args : "{}");
        free(args);
    } else if (!strcmp(type, "tool_result"))
        (void)ah_buf_printf(b, "tool result (%s): %s\n",
                            json_string_value(json_object_get(e, "tool_name")) ?: "?",
                            json_string_value(json_object_get(e, "tool_output")) ?: "");
    else if (!strcmp(type, "file_edit"))
        (void)ah_buf_printf(b, "file changed: %s\n",
                            json_string_value(json_object_get(e, "file_path")) ?: "?");
}

/* Does the branch's agent resume a saved conversation of its CLI (not a custom agent)? */
static bool resumes(struct executor *ex, const char *agent_type) {
    for (size_t i = 0; i < ex->cfg.n_agents; i++)
        if (!strcmp(ex->cfg.agents[i].type, agent_type))
            return false;
    const struct agent_adapter *ad = adapter_find(agent_type);
    return ad && ad->resume_file;
}

/* resume.json: {"prompt": the parent's first prompt, "events": [its events 1..k]}. */
static int write_resume(struct executor *ex, const char *tenant, const char *parent,
                        const char *path, const struct ah_buf *lines) {
    struct session_row *row = NULL;
    int rc = store_session_get(ex->store, tenant, parent, &row);
    if (rc < 0)
        return rc;
    AH_AUTOFREE char *prompt = prompt_text(json_object_get(session_row_request(row), "prompt"));
    session_row_free(row);
    json_t *js = prompt ? json_string(prompt) : NULL;
    AH_AUTOFREE char *jp = js ? json_dumps(js, JSON_ENCODE_ANY) : NULL;
    json_decref(js);
    struct ah_buf out = {.max = 80u * 1024 * 1024};
    rc = jp ? ah_buf_printf(&out, "{\"prompt\":%s,\"events\":[", jp) : AH_E_NOMEM;
    /* the events are already JSON, one per line: joined, not parsed again */
    for (size_t i = 0, first = 1; rc == 0 && lines->p && i < lines->n; first = 0) {
        const char *nl = memchr(lines->p + i, '\n', lines->n - i);
        size_t len = nl ? (size_t)(nl - (lines->p + i)) : lines->n - i;
        if (!first)
            rc = ah_buf_puts(&out, ",");
        if (rc == 0)
            rc = ah_buf_append(&out, lines->p + i, len);
        i += len + 1;
    }
    if (rc == 0)
        rc = ah_buf_puts(&out, "]}");
    if (rc == 0)
        rc = write_file(path, out.p, out.n, 0600);
    ah_buf_clear(&out);
    return rc;
}

/* transcript.jsonl, and what the agent is given of it (see the top of the file). */
static int write_transcript(struct executor *ex, const char *tenant, const char *id,
                            const char *parent, const char *agent_type, int64_t upto) {
    char **json = NULL;
    int64_t *seqs = NULL;
    size_t n = 0;
    size_t limit = upto < TRANSCRIPT_EVENTS ? (size_t)upto : TRANSCRIPT_EVENTS;
    int rc = limit ? store_event_range(ex->store, tenant, id, 0, limit, &json, &seqs, &n) : 0;
    if (rc < 0)
        return rc;
    struct ah_buf lines = {.max = 64u * 1024 * 1024}, text = {.max = 64u * 1024 * 1024};
    for (size_t i = 0; i < n; i++) {
        if (seqs[i] <= upto) {
            if (rc == 0)
                rc = ah_buf_printf(&lines, "%s\n", json[i]);
            json_t *e = json_loads(json[i], 0, NULL);
            line_of(&text, e);
            json_decref(e);
        }
        free(json[i]);
    }
    free(json);
    free(seqs);
    char path[4200];
    snprintf(path, sizeof(path), "%s/sessions/%s/transcript.jsonl", ex->cfg.data_dir, id);
    if (rc == 0)
        rc = write_file(path, lines.p ? lines.p : "", lines.n, 0600);
    if (rc == 0 && strcmp(agent_type, "scripted") != 0 && resumes(ex, agent_type)) {
        snprintf(path, sizeof(path), "%s/sessions/%s/resume.json", ex->cfg.data_dir, id);
        rc = write_resume(ex, tenant, parent, path, &lines);
    } else if (rc == 0 && strcmp(agent_type, "scripted") != 0) {
        snprintf(path, sizeof(path), "%s/sessions/%s/prompt.txt", ex->cfg.data_dir, id);
        char *prompt = NULL;
        size_t plen = 0;
        rc = read_file(path, 1024 * 1024, &prompt, &plen);
        size_t skip = text.n > TRANSCRIPT_TEXT ? text.n - TRANSCRIPT_TEXT : 0; /* the latest */
        struct ah_buf out = {.max = 4u * 1024 * 1024};
        if (rc == 0)
            rc = ah_buf_printf(&out,
                               "You are continuing an earlier session. Its transcript up to "
                               "this point%s:\n\n%.*s\nThe workspace is as it was then. New "
                               "message:\n\n%.*s",
                               skip ? " (its latest part)" : "", (int)(text.n - skip),
                               text.p ? text.p + skip : "", (int)plen, prompt);
        if (rc == 0)
            rc = write_file(path, out.p, out.n, 0600);
        ah_buf_clear(&out);
        free(prompt);
    }
    ah_buf_clear(&lines);
    ah_buf_clear(&text);
    return rc;
}

/* An overlay branch (workspace/overlay.c): the branch point written out once under
 * <data>/layers/<snap> as the shared lower layer, the branch's own changes in
 * <data>/sessions/<id>/overlay, mounted at ws in the server's mount namespace; its base
 * snapshot is the branch point itself (no file is read). AH_E_UNSUPPORTED: write it out. */
static int overlay_branch(struct executor *ex, struct ws_store *from, struct ws_store *to,
                          const char *id, const char *snap, const char *ws) {
    static bool told;
    const char *e = getenv("AH_BRANCH_OVERLAY");
    if (e && !strcmp(e, "0"))
        return AH_E_UNSUPPORTED;
    char layers[4200], layer[4300], cache[4400], ovdir[4200];
    snprintf(layers, sizeof(layers), "%s/layers", ex->cfg.data_dir);
    snprintf(layer, sizeof(layer), "%s/%s", layers, snap);
    snprintf(cache, sizeof(cache), "%s.statcache", layer);
    snprintf(ovdir, sizeof(ovdir), "%s/sessions/%s/overlay", ex->cfg.data_dir, id);
    int rc = make_dirs(layers, 0700);
    if (rc == 0 && (rc = ws_overlay_probe(layers)) == AH_E_UNSUPPORTED) {
        int why = errno;
        if (!__atomic_exchange_n(&told, true, __ATOMIC_RELAXED))
            log_msg(LOG_INFO, "overlay mounts are not available here (%s): branches' workspaces "
                    "are written out file by file", strerror(why));
        return rc;
    }
    for (int tries = 0; rc == 0 && tries < 3; tries++) {
        bool wrote = false;
        if ((rc = ws_layer_write(from, snap, layer, &wrote, NULL)) < 0)
            break;
        if ((rc = ws_overlay_mount(layer, ovdir, ws)) != AH_E_NOTFOUND)
            break; /* NOTFOUND: its last user released the layer meanwhile */
        rc = tries < 2 ? 0 : AH_E_IO;
    }
    if (rc == AH_E_UNSUPPORTED) {
        log_msg(LOG_WARN, "session %s: cannot mount an overlay (%s): its workspace is written "
                "out file by file", id, strerror(errno));
        return rc;
    }
    char base[WS_SNAP_ID_LEN + 1];
    if (rc == 0)
        rc = ws_snapshot_as(to, snap, "base", cache, ws, base);
    if (rc == 0)
        rc = snapshot_set_base(ex->cfg.data_dir, id, base);
    if (rc < 0)
        (void)ws_overlay_release(ovdir, ws);
    return rc;
}

int branch_provision(struct executor *ex, const char *tenant, const char *id,
                     const char *agent_type, const json_t *request, char **ret_provider,
                     char **ret_path, struct ah_problem *reterr) {
    json_t *b = json_object_get(request, "branch");
    const char *parent = json_string_value(json_object_get(b, "parentSessionId"));
    const char *snap = json_string_value(json_object_get(b, "fsSnapshotId"));
    json_int_t upto = json_integer_value(json_object_get(b, "seq"));
    if (!parent || !snap)
        return problem_set(reterr, AH_E_INVAL, "the branch names no parent snapshot");
    char pdir[4200], dir[4200], ws[4200];
    snprintf(pdir, sizeof(pdir), "%s/sessions/%s/snapshots", ex->cfg.data_dir, parent);
    snprintf(dir, sizeof(dir), "%s/sessions/%s/snapshots", ex->cfg.data_dir, id);
    snprintf(ws, sizeof(ws), "%s/workspaces/%s", ex->cfg.data_dir, id);
    struct ws_store *from = NULL, *to = NULL;
    const char *provider = "snapshot";
    int rc = ws_store_open(pdir, &from);
    if (rc == 0)
        rc = ws_store_open(dir, &to);
    if (rc == 0)
        rc = ws_store_borrow(to, pdir);
    if (rc == 0)
        rc = ws_snapshot_import(to, from, snap);
    if (rc == 0) {
        char wsroot[4200];
        snprintf(wsroot, sizeof(wsroot), "%s/workspaces", ex->cfg.data_dir);
        rc = make_dirs(wsroot, 0700);
    }
    if (rc == 0) {
        branch_release(ex, id); /* what a retried provisioning left */
        (void)workspace_remove(ws);
        rc = overlay_branch(ex, from, to, id, snap, ws);
        if (rc == 0)
            provider = "overlay";
        else if (rc == AH_E_UNSUPPORTED) /* written out, file by file */
            rc = ws_checkout_seeded(to, snap, ws, NULL);
    }
    ws_store_free(to);
    ws_store_free(from);
    if (rc == 0)
        rc = write_transcript(ex, tenant, id, parent, agent_type, upto);
    if (rc < 0)
        return problem_set(reterr, rc, "cannot make the branch's workspace from %s of session %s: %s",
                           snap, parent, ah_strerror(rc));
    *ret_provider = strdup(provider);
    *ret_path = strdup(ws);
    if (!*ret_provider || !*ret_path) {
        free(*ret_provider);
        free(*ret_path);
        return problem_set(reterr, AH_E_NOMEM, "out of memory");
    }
    return 0;
}

void branch_release(struct executor *ex, const char *id) {
    char ovdir[4200], ws[4200];
    snprintf(ovdir, sizeof(ovdir), "%s/sessions/%s/overlay", ex->cfg.data_dir, id);
    snprintf(ws, sizeof(ws), "%s/workspaces/%s", ex->cfg.data_dir, id);
    int rc = ws_overlay_release(ovdir, ws);
    if (rc < 0)
        log_msg(LOG_WARN, "session %s: cannot unmount its workspace: %s", id, ah_strerror(rc));
}

void branch_remount_all(struct executor *ex) {
    char dir[4200];
    snprintf(dir, sizeof(dir), "%s/sessions", ex->cfg.data_dir);
    DIR *d = opendir(dir);
    struct dirent *de;
    while (d && (de = readdir(d))) {
        if (!ulid_valid(de->d_name))
            continue;
        char ovdir[4400], ws[4400];
        snprintf(ovdir, sizeof(ovdir), "%s/%s/overlay", dir, de->d_name);
        snprintf(ws, sizeof(ws), "%s/workspaces/%s", ex->cfg.data_dir, de->d_name);
        int rc = ws_overlay_remount(ovdir, ws);
        if (rc == 1)
            log_msg(LOG_INFO, "session %s: its workspace's overlay is mounted again", de->d_name);
        else if (rc < 0)
            log_msg(LOG_WARN, "session %s: cannot mount its workspace's overlay again: %s",
                    de->d_name, ah_strerror(rc));
    }
    if (d)
        closedir(d);
}
