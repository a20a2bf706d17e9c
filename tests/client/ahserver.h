/*
 * ahserver.h — starts the real `ah agent access-point` (AH_BIN) for client tests: a temp
 * directory, --port 0 --db <tmp>/state.db, the port read from the JSON "listening" log line,
 * readiness awaited. Stopping checks the exit status and fails on a sanitizer report in the
 * server's stderr.
 */
#ifndef AH_TEST_AHSERVER_H
#define AH_TEST_AHSERVER_H

/* Starts the server; returns its port (> 0) or -1 (with a message on stderr). */
int ahserver_start(void);
/* "http://127.0.0.1:<port>" */
const char *ahserver_url(void);
/* SIGTERM, wait, check stderr, remove the temp directory (unless AH_KEEP_TMP is set).
 * Returns 0 when the server exited cleanly without sanitizer reports. */
int ahserver_stop(void);

#endif
