/*
 * errors.c — lookups into the AH_ERRORS table of <ah/error.h> and the errno mapping.
 * The table is the only place a code's status, slug and title are written down (D4).
 */
#include <errno.h>

#include "core.h"

struct error_info {
    int code;
    int status;
    const char *slug;
    const char *title;
    const char *name;
};

static const struct error_info errors[] = {
#define ROW_(name, value, status, slug, title) {value, status, slug, title, #name},
    AH_ERRORS(ROW_)
#undef ROW_
};

static const struct error_info *find(int code) {
    for (size_t i = 0; i < sizeof(errors) / sizeof(errors[0]); i++)
        if (errors[i].code == code)
            return &errors[i];
    return NULL;
}

const char *ah_strerror(int code) {
    if (code >= 0)
        return "Success";
    const struct error_info *e = find(code);
    return e ? e->title : "Unknown Error";
}

const char *ah_error_name(int code) {
    if (code >= 0)
        return "AH_OK";
    const struct error_info *e = find(code);
    return e ? e->name : "AH_E_UNKNOWN";
}

int ah_error_status(int code) {
    const struct error_info *e = find(code);
    return e ? e->status : 500;
}

const char *ah_error_slug(int code) {
    const struct error_info *e = find(code);
    return e ? e->slug : "internal";
}

const char *ah_error_title(int code) {
    const struct error_info *e = find(code);
    return e ? e->title : "Internal Server Error";
}

int ah_err_from_errno(int errnum) {
    switch (errnum) {
    case 0:
        return AH_OK;
    case ENOMEM:
        return AH_E_NOMEM;
    case ENOENT:
    case ESRCH:
        return AH_E_NOTFOUND;
    case EINVAL:
    case ERANGE:
        return AH_E_INVAL;
    case EEXIST:
        return AH_E_EXISTS;
    case EACCES:
    case EPERM:
        return AH_E_FORBIDDEN;
    case EAGAIN:
    case EBUSY:
        return AH_E_BUSY;
    case ETIMEDOUT:
        return AH_E_TIMEOUT;
    case ECONNREFUSED:
    case ECONNRESET:
    case EPIPE:
    case EHOSTUNREACH:
    case ENETUNREACH:
        return AH_E_NETWORK;
    case E2BIG:
    case EFBIG:
    case ENAMETOOLONG:
        return AH_E_TOOLARGE;
    case ENOSYS:
    case EOPNOTSUPP:
        return AH_E_NOTIMPL;
    case ECANCELED:
        return AH_E_CANCELED;
    default:
        return AH_E_IO;
    }
}
