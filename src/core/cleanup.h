/*
 * cleanup.h — scope-bound cleanup for locals (systemd's _cleanup_, kept to three macros).
 *
 *   AH_AUTO(fn) T *x = NULL;   calls fn(&x) when x leaves scope (fn takes T **)
 *   AH_AUTOFREE char *s = NULL; free(s) when s leaves scope
 *   AH_TAKE(p)                  yields p and sets it to NULL: ownership moves to the receiver
 *
 * Undo that is not memory (rollback, unsubscribe) goes to an `out:` label instead.
 */
#ifndef AH_CORE_CLEANUP_H
#define AH_CORE_CLEANUP_H

#include <stdlib.h>

#define AH_AUTO(fn) __attribute__((cleanup(fn)))
#define AH_AUTOFREE __attribute__((cleanup(ah_freep)))
#define AH_TAKE(p)                                                                                 \
    ({                                                                                             \
        __typeof__(p) take_tmp_ = (p);                                                             \
        (p) = NULL;                                                                                \
        take_tmp_;                                                                                 \
    })

static inline void ah_freep(void *p) {
    free(*(void **)p);
}

/* Defines `static inline void name##p(type **p)` calling name(*p): the AH_AUTO helper for a
 * NULL-safe destructor. */
#define AH_DEFINE_CLEANUP(type, name)                                                              \
    static inline void name##p(type **p) {                                                         \
        name(*p);                                                                                  \
    }

#endif
