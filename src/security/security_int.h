/* Helpers shared by the security module's own files; not for other modules
 * (they include security.h only). */
#ifndef THAW_SECURITY_INT_H
#define THAW_SECURITY_INT_H

#include <stddef.h>
#include <stdint.h>

static inline void sec_put_be32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

static inline uint32_t sec_get_be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static inline void sec_put_be64(unsigned char *p, uint64_t v)
{
    sec_put_be32(p, (uint32_t)(v >> 32));
    sec_put_be32(p + 4, (uint32_t)v);
}

#endif
