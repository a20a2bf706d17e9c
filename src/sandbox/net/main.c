/*
 * main.c — `ah-net`: the two ends of an allow-list sandbox's network relay (sandbox/relay.c) as
 * a program of their own, linked with nothing but the C library. A session with an allow-list
 * starts it twice (outside and inside the sandbox); `ah` itself, with its fifty-odd libraries,
 * takes tens of milliseconds longer to start (bench/bench-sandbox-exec.py). `ah agent net-relay`
 * and `ah agent net-forward` remain the same code, for a server installed without it.
 *
 *   ah-net relay --dir D --to HOST:PORT ... -- COMMAND...
 *   ah-net forward --dir D --listen IP:PORT ... -- COMMAND...
 */
#include <stdio.h>
#include <string.h>

#include "../sandbox.h"

int main(int argc, char **argv) {
    if (argc >= 2 && !strcmp(argv[1], "relay"))
        return sandbox_net_relay_main(argc - 1, argv + 1);
    if (argc >= 2 && !strcmp(argv[1], "forward"))
        return sandbox_net_forward_main(argc - 1, argv + 1);
    fputs("usage: ah-net relay|forward --dir DIR ... -- COMMAND...\n", stderr);
    return 2;
}
