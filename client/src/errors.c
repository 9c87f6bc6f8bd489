/* errors.c: error names, descriptions and classes from FERRY_ERROR_TABLE; the library version. */
#include "ferry_int.h"

FERRY_API int ferry_version(void)
{
    return FERRY_VERSION;
}

FERRY_API const char *ferry_version_str(void)
{
#define FERRY_STR2_(x) #x
#define FERRY_STR_(x) FERRY_STR2_(x)
    return FERRY_STR_(FERRY_VERSION_MAJOR) "." FERRY_STR_(FERRY_VERSION_MINOR) "." FERRY_STR_(FERRY_VERSION_PATCH);
#undef FERRY_STR_
#undef FERRY_STR2_
}

FERRY_API const char *ferry_err_str(ferry_err_t err)
{
    switch (err) {
#define X(name, code, retriable, desc)                                                                       \
    case FERRY_ERR_##name:                                                                                   \
        return desc;
        FERRY_ERROR_TABLE(X)
#undef X
    }
    return "unknown error code";
}

FERRY_API const char *ferry_err_name(ferry_err_t err)
{
    switch (err) {
#define X(name, code, retriable, desc)                                                                       \
    case FERRY_ERR_##name:                                                                                   \
        return #name;
        FERRY_ERROR_TABLE(X)
#undef X
    }
    return "?";
}

FERRY_API int ferry_err_is_retriable(ferry_err_t err)
{
    switch (err) {
#define X(name, code, retriable, desc)                                                                       \
    case FERRY_ERR_##name:                                                                                   \
        return retriable;
        FERRY_ERROR_TABLE(X)
#undef X
    }
    return 0;
}
