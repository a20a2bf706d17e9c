/*
 * ah/error.h — the one error table of Agent Harbor, shared by the server and libah-client.
 *
 * Every fallible call returns an int: 0 (or a count) on success, a negative AH_E_* on failure.
 * Each code carries the HTTP status and the Problem+JSON type slug the server answers with (D4),
 * so a handler never picks a status by hand. Public numbers never change: retired codes stay in
 * the table under an _OBSOLETE name (curl's rule).
 */
#ifndef AH_ERROR_H
#define AH_ERROR_H

#ifdef __cplusplus
extern "C" {
#endif

/* X(name, value, HTTP status, Problem type slug, Problem title) */
#define AH_ERRORS(X)                                                                               \
    X(AH_E_INVAL, -1, 400, "validation", "Validation Error")                                       \
    X(AH_E_BADREQ, -2, 400, "bad-request", "Bad Request")                                          \
    X(AH_E_AUTH, -3, 401, "auth", "Authentication Failed")                                         \
    X(AH_E_FORBIDDEN, -4, 403, "authz", "Authorization Failed")                                    \
    X(AH_E_NOTFOUND, -5, 404, "not-found", "Not Found")                                            \
    X(AH_E_METHOD, -6, 405, "method-not-allowed", "Method Not Allowed")                            \
    X(AH_E_NOTACCEPTABLE, -7, 406, "not-acceptable", "Not Acceptable")                             \
    X(AH_E_CONFLICT, -8, 409, "conflict", "Conflict")                                              \
    X(AH_E_GONE, -9, 410, "gone", "Gone")                                                          \
    X(AH_E_TOOLARGE, -10, 413, "payload-too-large", "Payload Too Large")                           \
    X(AH_E_MEDIATYPE, -11, 415, "unsupported-media-type", "Unsupported Media Type")                \
    X(AH_E_IDEMPOTENCY, -12, 422, "idempotency-key-mismatch", "Idempotency Key Reused")            \
    X(AH_E_RATELIMIT, -13, 429, "rate-limited", "Rate Limited")                                    \
    X(AH_E_INTERNAL, -14, 500, "internal", "Internal Server Error")                                \
    X(AH_E_DB, -15, 500, "database", "Database Error")                                             \
    X(AH_E_NOTIMPL, -16, 501, "not-implemented", "Not Implemented")                                \
    X(AH_E_UNAVAIL, -17, 503, "unavailable", "Service Unavailable")                                \
    X(AH_E_NOMEM, -18, 503, "out-of-memory", "Out of Memory")                                      \
    X(AH_E_IO, -19, 500, "io", "I/O Error")                                                        \
    X(AH_E_TIMEOUT, -20, 504, "timeout", "Timed Out")                                              \
    X(AH_E_NETWORK, -21, 502, "network", "Network Error")                                          \
    X(AH_E_PROTOCOL, -22, 502, "protocol", "Protocol Error")                                       \
    X(AH_E_EXISTS, -23, 409, "exists", "Already Exists")                                           \
    X(AH_E_BUSY, -24, 409, "in-progress", "Request In Progress")                                   \
    X(AH_E_CANCELED, -25, 499, "canceled", "Canceled")                                              \
    X(AH_E_RUNTIME, -26, 422, "runtime-unavailable", "Runtime Unavailable")                        \
    X(AH_E_UNSUPPORTED, -27, 422, "unsupported", "Unsupported Request")                            \
    X(AH_E_STORAGE, -28, 503, "storage-unavailable", "Storage Unavailable")

enum ah_error {
    AH_OK = 0,
#define AH_ERROR_ENUM_(name, value, status, slug, title) name = (value),
    AH_ERRORS(AH_ERROR_ENUM_)
#undef AH_ERROR_ENUM_
};

/* Short constant text for a code ("Not Found"); "Unknown Error" for numbers not in the table. */
const char *ah_strerror(int code);

/* The code's name as a string ("AH_E_NOTFOUND"), for logs and tests. */
const char *ah_error_name(int code);

#ifdef __cplusplus
}
#endif
#endif
