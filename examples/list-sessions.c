/*
 * list-sessions.c — a libah-client example: print the server's version and its sessions,
 * newest first.
 *
 * Build against the installed library:
 *     cc list-sessions.c $(pkg-config --cflags --libs ah-client) -o list-sessions
 * Run:
 *     ./list-sessions http://127.0.0.1:3001 [--api-key KEY] [--insecure] [--status running]
 * The API key may also come from the environment (AH_API_KEY), as the CLI reads it.
 *
 * Exit status: 0 listed, 1 bad usage or setup, 2 the server is unreachable or refused the
 * version call, 3 listing the sessions failed.
 */
#include <ah/client.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void print_error(const char *what, int rc, const struct ah_api_error *e) {
    fprintf(stderr, "%s: %s", what, ah_strerror(rc));
    if (e->status)
        fprintf(stderr, " (HTTP %d)", e->status);
    if (e->detail)
        fprintf(stderr, ": %s", e->detail);
    if (e->request_id)
        fprintf(stderr, " [request %s]", e->request_id);
    fputc('\n', stderr);
    for (size_t i = 0; i < e->n_errors; i++)
        fprintf(stderr, "  %s: %s\n", e->errors[i].field, e->errors[i].message);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s URL [--api-key KEY] [--insecure] [--status STATUS]\n", argv[0]);
        return 1;
    }
    const char *key = getenv("AH_API_KEY");
    const char *status = NULL;
    int insecure = 0;
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--api-key") == 0 && i + 1 < argc)
            key = argv[++i];
        else if (strcmp(argv[i], "--status") == 0 && i + 1 < argc)
            status = argv[++i];
        else if (strcmp(argv[i], "--insecure") == 0)
            insecure = 1;
        else {
            fprintf(stderr, "unknown argument: %s\n", argv[i]);
            return 1;
        }
    }

    ah_client *c = NULL;
    int rc = ah_client_new(argv[1], &c);
    if (rc < 0) {
        fprintf(stderr, "bad server URL %s: %s\n", argv[1], ah_strerror(rc));
        return 1;
    }
    if ((key && ah_client_set_api_key(c, key) < 0) ||
        (insecure && ah_client_set_insecure(c, 1) < 0)) {
        fprintf(stderr, "cannot configure the client\n");
        ah_client_free(c);
        return 1;
    }

    struct ah_api_error err = {0};
    struct ah_version *v = NULL;
    rc = ah_client_version(c, &v, &err);
    if (rc < 0) {
        print_error("version", rc, &err);
        ah_api_error_clear(&err);
        ah_client_free(c);
        return 2;
    }
    printf("server %s (libah-client %s)\n", v->version ? v->version : "?",
           ah_client_version_string());
    ah_version_free(v);

    struct ah_session_filter filter = {.status = status};
    struct ah_session_list *list = NULL;
    rc = ah_client_list_sessions(c, &filter, &list, &err);
    if (rc < 0) {
        print_error("sessions", rc, &err);
        ah_api_error_clear(&err);
        ah_client_free(c);
        return 3;
    }
    printf("%-26s  %-12s  %-14s  %s\n", "ID", "STATUS", "AGENT", "CREATED");
    for (size_t i = 0; i < list->n_items; i++) {
        const struct ah_session *s = list->items[i];
        printf("%-26s  %-12s  %-14s  %s\n", s->id ? s->id : "?",
               s->status_name ? s->status_name : "?", s->agent_type ? s->agent_type : "-",
               s->created_at ? s->created_at : "-");
    }
    printf("%zu shown, %lld in total\n", list->n_items, (long long)list->total);
    ah_session_list_free(list);
    ah_client_free(c);
    return 0;
}
