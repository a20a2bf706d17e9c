/*
 * internal.h — private to exec/: what the server side's files share besides executor.h. The
 * layers below it are reached through their public headers: the agent side (the recorder
 * link's framing, adapters), workspaces and their providers, and the process helpers (os/).
 */
#ifndef AH_EXEC_INTERNAL_H
#define AH_EXEC_INTERNAL_H

#include <sys/types.h>

#include "../agent/agent.h"
#include "../os/os.h"
#include "exec.h"

#endif
