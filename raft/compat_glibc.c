/* compat_glibc.c: C23 libc entry points that Debian 13's libraft.a references and Debian 12's glibc lacks. */
#include <features.h>

#if defined(__GLIBC__) && !__GLIBC_PREREQ(2, 38)
#include <stdarg.h>
#include <stdio.h>

/* glibc 2.38 maps sscanf to __isoc23_sscanf when compiling as C2x; libraft.a (built on glibc 2.40)
 * calls it in uv_segment.c and uv_snapshot.c to parse segment and snapshot file names (formats of
 * %llu fields and %n only). The only C23 differences are %b and 0b-prefixed %i, which those formats
 * never use, so the C99 vsscanf is an exact substitute there. On glibc >= 2.38 this file is empty
 * and the real symbol is used. */
int __isoc23_sscanf(const char *str, const char *format, ...) __attribute__((format(scanf, 2, 3)));

int __isoc23_sscanf(const char *str, const char *format, ...)
{
    va_list ap;
    int n;

    va_start(ap, format);
    n = vsscanf(str, format, ap);
    va_end(ap);
    return n;
}
#else
typedef int ferry_raft_compat_glibc_unused; /* keep the translation unit non-empty */
#endif
