/*
 * internal.h — private to agent/: what the recorder, the agent runner, the watcher and the
 * asciicast writer share.
 */
#ifndef AH_AGENT_INTERNAL_H
#define AH_AGENT_INTERNAL_H

#include "../os/os.h"
#include "../workspace/workspace.h"
#include "agent.h"

/* ---- asciicast v2 writer --------------------------------------------------------------------- */

struct cast_writer;
int cast_open(const char *path, int cols, int rows, const char *title, struct cast_writer **ret);
/* Appends output bytes (any bytes: incomplete UTF-8 at the end is held for the next call,
 * invalid sequences become U+FFFD). */
int cast_output(struct cast_writer *w, const char *data, size_t len);
int cast_input(struct cast_writer *w, const char *data, size_t len);
int cast_resize(struct cast_writer *w, int cols, int rows);
void cast_close(struct cast_writer *w);

#endif
