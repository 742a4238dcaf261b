/* Name -> position indexes over access's arrays of tenants, keys and data
 * keysets, so finding one costs the same with 10 entries or 100,000: open
 * addressing with linear probing over a power-of-two table at most half
 * full, deletion by backward shift (no tombstones to pile up). */
#include "access/access_int.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#define MIN_SLOTS 16u

void access_index_init(struct access_index *ix, const unsigned char *hash_key, size_t stride,
                       size_t name_off)
{
    memset(ix, 0, sizeof(*ix));
    ix->hash_key = hash_key;
    ix->stride = stride;
    ix->name_off = name_off;
}

void access_index_free(struct access_index *ix)
{
    free(ix->slots);
    ix->slots = NULL;
    ix->mask = 0;
    ix->n = 0;
}

static const char *name_at(const struct access_index *ix, const void *base, uint32_t i)
{
    return (const char *)base + (size_t)i * ix->stride + ix->name_off;
}

/* Keyed SipHash (about 20 ns for a name): tenant names may come from
 * customers through whatever provisions tenants, and with an unkeyed hash
 * chosen names could pile into one probe run that every lookup then
 * walks. Key ids are random, but the bootstrap admin key's is chosen. */
static uint32_t hash_of(const struct access_index *ix, const char *name)
{
    unsigned char h[crypto_shorthash_BYTES];
    crypto_shorthash(h, (const unsigned char *)name, strlen(name), ix->hash_key);
    uint32_t v;
    memcpy(&v, h, sizeof(v));
    return v;
}

/* The slot holding name, or the empty slot where it would go. */
static uint32_t probe(const struct access_index *ix, const void *base, const char *name)
{
    uint32_t s = hash_of(ix, name) & ix->mask;
    while (ix->slots[s] && strcmp(name_at(ix, base, ix->slots[s] - 1), name) != 0)
        s = (s + 1) & ix->mask;
    return s;
}

static int resize(struct access_index *ix, const void *base, uint32_t slots)
{
    uint32_t *fresh = calloc(slots, sizeof(*fresh));
    if (!fresh) return THAW_ENOMEM;
    uint32_t *old = ix->slots, old_n = old ? ix->mask + 1 : 0;
    ix->slots = fresh;
    ix->mask = slots - 1;
    for (uint32_t k = 0; k < old_n; k++) {
        if (!old[k]) continue;
        uint32_t s = hash_of(ix, name_at(ix, base, old[k] - 1)) & ix->mask;
        while (ix->slots[s])
            s = (s + 1) & ix->mask;
        ix->slots[s] = old[k];
    }
    free(old);
    return 0;
}

int access_index_put(struct access_index *ix, const void *base, uint32_t i)
{
    if (i >= UINT32_MAX - 1) return THAW_ERANGE;
    /* At most half full: probe runs stay a slot or two long. */
    if (!ix->slots || (ix->n + 1) * 2 > ix->mask + 1) {
        uint32_t slots = ix->slots ? (ix->mask + 1) * 2 : MIN_SLOTS;
        while ((ix->n + 1) * 2 > slots)
            slots *= 2;
        if (resize(ix, base, slots)) return THAW_ENOMEM;
    }
    uint32_t s = probe(ix, base, name_at(ix, base, i));
    if (!ix->slots[s]) ix->n++;
    ix->slots[s] = i + 1;
    return 0;
}

long access_index_find(const struct access_index *ix, const void *base, const char *name)
{
    if (!ix->slots || !name) return -1;
    uint32_t s = probe(ix, base, name);
    return ix->slots[s] ? (long)ix->slots[s] - 1 : -1;
}

void access_index_moved(struct access_index *ix, const void *base, uint32_t from, uint32_t to)
{
    if (!ix->slots) return;
    /* The entry still says from: found by its value along its name's run. */
    uint32_t s = hash_of(ix, name_at(ix, base, to)) & ix->mask;
    while (ix->slots[s] && ix->slots[s] != from + 1)
        s = (s + 1) & ix->mask;
    if (ix->slots[s]) ix->slots[s] = to + 1;
}

void access_index_del(struct access_index *ix, const void *base, const char *name)
{
    if (!ix->slots) return;
    uint32_t s = probe(ix, base, name);
    if (!ix->slots[s]) return;
    ix->slots[s] = 0;
    ix->n--;
    /* Backward shift: pull later members of the run into the hole when
     * their home slot is not between the hole and where they sit, so no
     * lookup ever stops early at it. */
    for (uint32_t hole = s, k = (s + 1) & ix->mask; ix->slots[k]; k = (k + 1) & ix->mask) {
        uint32_t home = hash_of(ix, name_at(ix, base, ix->slots[k] - 1)) & ix->mask;
        bool stays = hole <= k ? (home > hole && home <= k) : (home > hole || home <= k);
        if (stays) continue;
        ix->slots[hole] = ix->slots[k];
        ix->slots[k] = 0;
        hole = k;
    }
}
