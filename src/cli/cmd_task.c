/*
 * cmd_task.c — `ah task create` (also spelled `ah task`): builds a task from flags, a prompt
 * (flag, file or stdin) and optional scenario files, launches it through the task manager, and
 * prints the session ids — or, with --follow, shows the sessions' events live and exits with
 * their outcome (CLI-and-enrollment.md §7.2, D20, D25).
 *
 * Per-agent options (--instances/--count, --scenario) apply to the --agent before them; given
 * before any --agent they are defaults for every agent (the default agent is `scripted`).
 * Validation that needs the server's knowledge (agent types, limits, prompt size) is left to
 * the server: its field errors are printed and the exit code is 7.
 */
#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"

#define MAX_AGENTS 64 /* the server allows fewer (and says so); this only bounds memory */
#define MAX_LABELS 256
#define MAX_SNAPSHOT_PREFS 64
#define SCENARIO_MAX (1024 * 1024)

static const char usage_text[] =
    "usage: ah task create [OPTIONS] [PROMPT | -]\n"
    "       ah task [OPTIONS] [PROMPT | -]\n"
    "\n"
    "Creates a task on the access point: one session per agent instance. Prints the session\n"
    "ids, one per line (--json: the server's answer). With --follow it shows the sessions'\n"
    "events as they happen and exits with their outcome.\n"
    "\n"
    "Prompt (exactly one of):\n"
    "  --prompt TEXT             the task text (also: words after the options)\n"
    "  --prompt-file FILE        read it from FILE ('-': standard input)\n"
    "  -, --prompt -             read it from standard input (also when no prompt is given\n"
    "                            and standard input is not a terminal)\n"
    "\n"
    "Task:\n"
    "  --agent TYPE[@VERSION]    an agent to run (repeatable; default scripted)\n"
    "  --instances N, --count N  sessions of the preceding --agent (default 1)\n"
    "  --scenario FILE           a JSON array of scripted-agent steps (D20) for the preceding\n"
    "                            --agent (before any --agent: for every scripted agent)\n"
    "  --repo URL|PATH           git repository to work on (a local path is made absolute);\n"
    "                            without it the workspace starts empty (repo.mode=none)\n"
    "  --branch NAME             branch of --repo\n"
    "  --commit SHA              commit of --repo\n"
    "  --project ID              project the task belongs to\n"
    "  --labels KEY=VALUE        labels (repeatable, or comma-separated)\n"
    "  --delivery MODE           pr, branch or patch\n"
    "  --target-branch NAME      branch the delivery targets\n"
    "  --snapshot-preference A,B workspace providers in order of preference\n"
    "  --sandbox PROFILE         the sandbox the agents run in: a profile of the server's\n"
    "                            local runtime (default, offline, disabled when the server\n"
    "                            allows it, or one its configuration defines; `local`: the\n"
    "                            server's default), or `devcontainer`; `ah remote runtimes`\n"
    "                            lists what the server offers\n"
    "  --devcontainer PATH       run in the devcontainer at PATH (runtime devcontainer)\n"
    "  -f, --follow              follow the sessions until they end; the exit code is the\n"
    "                            outcome: 0 completed, 1 failed, 3 the agent could not be\n"
    "                            launched (binary not found), 130 stopped or cancelled, or\n"
    "                            Ctrl-C (the sessions go on on the server)\n";

struct agent_opt {
    char *type; /* owned: TYPE of TYPE@VERSION */
    const char *version;
    int64_t count;
    const char *scenario_file; /* NULL: the defaults' */
    char *settings;            /* owned JSON text */
};

struct task_opts {
    const char *prompt, *prompt_file;
    bool prompt_stdin;
    const char *repo, *branch, *commit, *project, *delivery, *target_branch, *snapshot_pref;
    const char *sandbox, *devcontainer;
    bool follow;
    struct agent_opt agents[MAX_AGENTS];
    size_t n_agents;
    struct agent_opt defaults; /* per-agent options given before any --agent */
    struct ah_label labels[MAX_LABELS];
    char *label_text[MAX_LABELS]; /* owned copies the labels point into */
    size_t n_labels;
    const char *snapshot_prefs[MAX_SNAPSHOT_PREFS];
    char *snapshot_text;
    size_t n_snapshot_prefs;
    char *repo_abs;
    char *prompt_text;
};

static void task_opts_clear(struct task_opts *t) {
    for (size_t i = 0; i < t->n_agents; i++) {
        free(t->agents[i].type);
        free(t->agents[i].settings);
    }
    free(t->defaults.settings);
    for (size_t i = 0; i < t->n_labels; i++)
        free(t->label_text[i]);
    free(t->snapshot_text);
    free(t->repo_abs);
    free(t->prompt_text);
}

static struct agent_opt *current_agent(struct task_opts *t) {
    return t->n_agents ? &t->agents[t->n_agents - 1] : &t->defaults;
}

static int add_agent(const struct client_opts *o, struct task_opts *t, const char *arg) {
    if (t->n_agents == MAX_AGENTS)
        return client_usage_error(o, "more than %d --agent options", MAX_AGENTS);
    const char *at = strchr(arg, '@');
    size_t len = at ? (size_t)(at - arg) : strlen(arg);
    if (len == 0 || (at && !at[1]))
        return client_usage_error(o, "--agent wants TYPE or TYPE@VERSION, not '%s'", arg);
    struct agent_opt *a = &t->agents[t->n_agents];
    memset(a, 0, sizeof(*a));
    if (!(a->type = strndup(arg, len))) {
        fprintf(stderr, "ah %s: out of memory\n", o->command);
        return EXIT_GENERAL;
    }
    a->version = at ? at + 1 : NULL;
    t->n_agents++;
    return 0;
}

/* "k=v" or "k=v,k2=v2". */
static int add_labels(const struct client_opts *o, struct task_opts *t, const char *arg) {
    const char *p = arg;
    while (*p) {
        size_t len = strcspn(p, ",");
        if (len) {
            if (t->n_labels == MAX_LABELS)
                return client_usage_error(o, "more than %d labels", MAX_LABELS);
            char *kv = strndup(p, len);
            if (!kv) {
                fprintf(stderr, "ah %s: out of memory\n", o->command);
                return EXIT_GENERAL;
            }
            char *eq = strchr(kv, '=');
            if (!eq || eq == kv) {
                int r = client_usage_error(o, "--labels wants KEY=VALUE, not '%s'", kv);
                free(kv);
                return r;
            }
            *eq = '\0';
            t->label_text[t->n_labels] = kv;
            t->labels[t->n_labels++] = (struct ah_label){kv, eq + 1};
        }
        p += len;
        if (*p == ',')
            p++;
    }
    return 0;
}

static int split_snapshot_prefs(const struct client_opts *o, struct task_opts *t) {
    if (!t->snapshot_pref)
        return 0;
    if (!(t->snapshot_text = strdup(t->snapshot_pref))) {
        fprintf(stderr, "ah %s: out of memory\n", o->command);
        return EXIT_GENERAL;
    }
    t->n_snapshot_prefs = client_split_list(t->snapshot_text, t->snapshot_prefs,
                                            MAX_SNAPSHOT_PREFS);
    if (t->n_snapshot_prefs > MAX_SNAPSHOT_PREFS)
        return client_usage_error(o, "--snapshot-preference has too many items");
    if (!t->n_snapshot_prefs)
        return client_usage_error(o, "--snapshot-preference needs at least one provider");
    return 0;
}

/* {"scenario": [...]} from a scenario file: a JSON array of steps, or an object holding one
 * under "scenario" (the form the session's agent settings show). */
static int load_scenario(const struct client_opts *o, const char *path, char **ret) {
    char *text = NULL;
    int r = client_read_file(o, path, SCENARIO_MAX, &text);
    if (r)
        return r;
    json_error_t jerr;
    json_t *j = json_loads(text, 0, &jerr);
    free(text);
    if (!j) {
        fprintf(stderr, "ah %s: %s:%d: not JSON: %s\n", o->command, path, jerr.line, jerr.text);
        return EXIT_USAGE;
    }
    json_t *steps = json_is_object(j) ? json_object_get(j, "scenario") : j;
    if (!json_is_array(steps)) {
        fprintf(stderr, "ah %s: %s: a scenario is a JSON array of steps (D20)\n", o->command, path);
        json_decref(j);
        return EXIT_USAGE;
    }
    json_t *settings = json_pack("{s:O}", "scenario", steps);
    json_decref(j);
    char *out = settings ? json_dumps(settings, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(settings);
    if (!out) {
        fprintf(stderr, "ah %s: out of memory\n", o->command);
        return EXIT_GENERAL;
    }
    *ret = out;
    return 0;
}

/* Fills in the defaults and loads the scenario files of every agent. */
static int finish_agents(const struct client_opts *o, struct task_opts *t) {
    int r;
    if (t->n_agents == 0 && (r = add_agent(o, t, "scripted")) != 0)
        return r;
    if (t->defaults.scenario_file &&
        (r = load_scenario(o, t->defaults.scenario_file, &t->defaults.settings)) != 0)
        return r;
    for (size_t i = 0; i < t->n_agents; i++) {
        struct agent_opt *a = &t->agents[i];
        if (!a->count)
            a->count = t->defaults.count;
        if (a->scenario_file) {
            if ((r = load_scenario(o, a->scenario_file, &a->settings)) != 0)
                return r;
        } else if (t->defaults.settings && strcmp(a->type, "scripted") == 0) {
            if (!(a->settings = strdup(t->defaults.settings))) {
                fprintf(stderr, "ah %s: out of memory\n", o->command);
                return EXIT_GENERAL;
            }
        }
    }
    return 0;
}

static int get_prompt(const struct client_opts *o, struct task_opts *t, int nargs, char **args) {
    int sources = (t->prompt != NULL) + (t->prompt_file != NULL) + (nargs > 0);
    if (sources > 1)
        return client_usage_error(o, "give the prompt once: --prompt, --prompt-file or words "
                                     "after the options");
    if ((nargs == 1 && strcmp(args[0], "-") == 0) || (t->prompt && strcmp(t->prompt, "-") == 0)) {
        t->prompt = NULL;
        t->prompt_file = "-";
    } else if (nargs > 0) {
        if (!(t->prompt_text = client_join(nargs, args))) {
            fprintf(stderr, "ah %s: out of memory\n", o->command);
            return EXIT_GENERAL;
        }
        t->prompt = t->prompt_text;
    }
    if (!t->prompt && !t->prompt_file) {
        if (isatty(STDIN_FILENO))
            return client_usage_error(o, "no prompt: use --prompt TEXT, --prompt-file FILE or "
                                         "pipe it on standard input");
        t->prompt_file = "-";
    }
    if (t->prompt_file) {
        int r = client_read_prompt(o, t->prompt_file, &t->prompt_text);
        if (r)
            return r;
        t->prompt = t->prompt_text;
    }
    return 0;
}

/* A --repo that names an existing directory is sent as an absolute path: the server does not
 * share our working directory. */
static int resolve_repo(const struct client_opts *o, struct task_opts *t) {
    struct stat st;
    if (!t->repo || strstr(t->repo, "://") || stat(t->repo, &st) != 0 || !S_ISDIR(st.st_mode))
        return 0;
    if (!(t->repo_abs = realpath(t->repo, NULL))) {
        fprintf(stderr, "ah %s: --repo %s: %s\n", o->command, t->repo, strerror(errno));
        return EXIT_USAGE;
    }
    return 0;
}

int cmd_task_create(int argc, char **argv) {
    enum {
        O_PROMPT = 0x100,
        O_PROMPT_FILE,
        O_REPO,
        O_BRANCH,
        O_COMMIT,
        O_AGENT,
        O_COUNT,
        O_SCENARIO,
        O_PROJECT,
        O_LABELS,
        O_DELIVERY,
        O_TARGET,
        O_SNAPSHOT,
        O_SANDBOX,
        O_DEVCONTAINER,
    };
    static const struct option longopts[] = {
        CLIENT_LONG_OPTIONS,
        {"prompt", required_argument, NULL, O_PROMPT},
        {"prompt-file", required_argument, NULL, O_PROMPT_FILE},
        {"repo", required_argument, NULL, O_REPO},
        {"branch", required_argument, NULL, O_BRANCH},
        {"commit", required_argument, NULL, O_COMMIT},
        {"agent", required_argument, NULL, O_AGENT},
        {"instances", required_argument, NULL, O_COUNT},
        {"count", required_argument, NULL, O_COUNT},
        {"scenario", required_argument, NULL, O_SCENARIO},
        {"project", required_argument, NULL, O_PROJECT},
        {"labels", required_argument, NULL, O_LABELS},
        {"label", required_argument, NULL, O_LABELS},
        {"delivery", required_argument, NULL, O_DELIVERY},
        {"target-branch", required_argument, NULL, O_TARGET},
        {"snapshot-preference", required_argument, NULL, O_SNAPSHOT},
        {"sandbox", required_argument, NULL, O_SANDBOX},
        {"devcontainer", required_argument, NULL, O_DEVCONTAINER},
        {"follow", no_argument, NULL, 'f'},
        {NULL, 0, NULL, 0},
    };
    struct client_opts o;
    client_opts_init(&o, "task create");
    struct task_opts *t = calloc(1, sizeof(*t));
    if (!t) {
        fprintf(stderr, "ah task create: out of memory\n");
        return EXIT_GENERAL;
    }
    struct client_conn conn = {0};
    struct ah_agent_spec *agents = NULL;
    struct ah_task_created *created = NULL;
    struct ah_api_error e = {0};
    int code = 0, opt;
    while (code == 0 &&
           (opt = getopt_long(argc, argv, CLIENT_SHORT_OPTIONS "f", longopts, NULL)) != -1) {
        switch (opt) {
        case O_PROMPT: t->prompt = optarg; break;
        case O_PROMPT_FILE: t->prompt_file = optarg; break;
        case O_REPO: t->repo = optarg; break;
        case O_BRANCH: t->branch = optarg; break;
        case O_COMMIT: t->commit = optarg; break;
        case O_AGENT: code = add_agent(&o, t, optarg); break;
        case O_COUNT:
            code = client_opt_int(&o, "--instances", optarg, 1, 1000, &current_agent(t)->count);
            break;
        case O_SCENARIO: {
            struct agent_opt *a = current_agent(t);
            if (a != &t->defaults && strcmp(a->type, "scripted") != 0)
                code =
                    client_usage_error(&o, "--scenario is for the scripted agent, not %s", a->type);
            a->scenario_file = optarg;
            break;
        }
        case O_PROJECT: t->project = optarg; break;
        case O_LABELS: code = add_labels(&o, t, optarg); break;
        case O_DELIVERY: t->delivery = optarg; break;
        case O_TARGET: t->target_branch = optarg; break;
        case O_SNAPSHOT: t->snapshot_pref = optarg; break;
        case O_SANDBOX: t->sandbox = optarg; break;
        case O_DEVCONTAINER: t->devcontainer = optarg; break;
        case 'f': t->follow = true; break;
        default: code = client_opts_handle(&o, opt, argc, argv); break;
        }
    }
    if (code < 0) {
        fputs(usage_text, stdout);
        client_opts_help(stdout);
        code = EXIT_OK;
        goto out;
    }
    if (code || (code = client_opts_finish(&o)) != 0)
        goto out;
    if (t->delivery && strcmp(t->delivery, "pr") && strcmp(t->delivery, "branch") &&
        strcmp(t->delivery, "patch")) {
        code =
            client_usage_error(&o, "--delivery must be pr, branch or patch, not '%s'", t->delivery);
        goto out;
    }
    /* --sandbox names a profile of the local runtime, or the devcontainer runtime; `local` is
     * the server's default profile (CLI.md's value) */
    bool devcontainer = t->devcontainer || (t->sandbox && !strcmp(t->sandbox, "devcontainer"));
    if (t->sandbox && !*t->sandbox) {
        code = client_usage_error(&o, "--sandbox wants a profile name");
        goto out;
    }
    if (devcontainer && t->sandbox && strcmp(t->sandbox, "devcontainer")) {
        code = client_usage_error(&o, "--devcontainer runs in a container, not in the local "
                                      "sandbox profile '%s': give one of them",
                                  t->sandbox);
        goto out;
    }
    if ((t->branch || t->commit) && !t->repo) {
        code = client_usage_error(&o, "--branch and --commit need --repo");
        goto out;
    }
    if ((code = get_prompt(&o, t, argc - optind, argv + optind)) || (code = finish_agents(&o, t)) ||
        (code = split_snapshot_prefs(&o, t)) || (code = resolve_repo(&o, t)) ||
        (code = client_conn_open(&o, &conn)))
        goto out;
    if (!(agents = calloc(t->n_agents, sizeof(*agents)))) {
        fprintf(stderr, "ah task create: out of memory\n");
        code = EXIT_GENERAL;
        goto out;
    }
    for (size_t i = 0; i < t->n_agents; i++)
        agents[i] = (struct ah_agent_spec){.type = t->agents[i].type,
                                           .version = t->agents[i].version,
                                           .count = t->agents[i].count,
                                           .settings_json = t->agents[i].settings};
    struct ah_task_spec spec = {
        .project_id = t->project,
        .prompt = t->prompt,
        .repo_url = t->repo_abs ? t->repo_abs : t->repo,
        .repo_branch = t->branch,
        .repo_commit = t->commit,
        .snapshot_preference = t->snapshot_prefs,
        .n_snapshot_preference = t->n_snapshot_prefs,
        .agents = agents,
        .n_agents = t->n_agents,
        .delivery_mode = t->delivery,
        .target_branch = t->target_branch,
        .runtime_type = devcontainer ? "devcontainer" : NULL,
        .devcontainer_path = t->devcontainer,
        .sandbox = devcontainer || !t->sandbox || !strcmp(t->sandbox, "local") ? NULL : t->sandbox,
        .labels = t->labels,
        .n_labels = t->n_labels,
    };
    int rc = ah_task_manager_launch(conn.tm, &spec, &created, &e);
    if (rc < 0) {
        code = client_fail(&o, &conn, "cannot create the task", rc, &e);
        goto out;
    }
    if (o.json) {
        puts(created->json ? created->json : "{}");
    } else {
        for (size_t i = 0; i < created->n_session_ids; i++)
            puts(created->session_ids[i]);
    }
    fflush(stdout);
    if (t->follow) {
        struct follow_opts fo = {.prefix_ids = created->n_session_ids > 1};
        code = client_follow(&o, &conn, created->session_ids, created->n_session_ids, &fo);
    }
out:
    ah_api_error_clear(&e);
    ah_task_created_free(created);
    free(agents);
    client_conn_close(&conn);
    task_opts_clear(t);
    free(t);
    return code;
}
