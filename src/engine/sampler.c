/* Token sampling: penalties over a window of accepted tokens, temperature,
 * top-k, top-p, min-p and a seeded draw with a self-contained PRNG
 * (xoshiro256**), plus log-probabilities. Candidates are ordered by (logit
 * descending, id ascending), a total order, so the result never depends on
 * how a selection algorithm breaks ties. */
#include "engine/text.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

struct cand {
    int32_t id;
    float logit;
};

struct engine_sampler {
    struct engine_sampling_params p;
    uint64_t seed; /* resolved (never SAMPLER_SEED_RANDOM) */
    uint64_t rng[4];
    int32_t *window; /* ring of the last penalty_last_n accepted tokens */
    size_t n_window, head;
    struct cand *cand;
    size_t cap;
    int32_t *counts; /* scratch for the penalty pass */
};

/* ------------------------------------------------------------------- PRNG */

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static uint64_t xoshiro(uint64_t s[4])
{
    uint64_t r = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return r;
}

/* Uniform in [0, 1) with 53 random bits. */
static double uniform(uint64_t s[4])
{
    return (double)(xoshiro(s) >> 11) * 0x1.0p-53;
}

static void reseed(struct engine_sampler *s)
{
    uint64_t x = s->seed;
    for (int i = 0; i < 4; i++)
        s->rng[i] = splitmix64(&x);
}

/* ------------------------------------------------------------- lifecycle */

void sampler_params_default(struct engine_sampling_params *p)
{
    *p = (struct engine_sampling_params){
        .temperature = 0.8f,
        .top_k = 40,
        .top_p = 0.95f,
        .min_p = 0.05f,
        .repeat_penalty = 1.0f,
        .penalty_last_n = 64,
        .seed = SAMPLER_SEED_RANDOM,
    };
}

static int check_params(const struct engine_sampling_params *p, struct thaw_err *err)
{
    if (isnan(p->temperature) || isnan(p->top_p) || isnan(p->min_p) || isnan(p->repeat_penalty) ||
        !isfinite(p->frequency_penalty) || !isfinite(p->presence_penalty))
        return thaw_errf(err, THAW_EINVAL, "sampling: parameters must be numbers");
    if (!(p->top_p > 0))
        return thaw_errf(err, THAW_EINVAL, "sampling: top_p must be above 0 (got %g)", p->top_p);
    if (p->min_p > 1)
        return thaw_errf(err, THAW_EINVAL, "sampling: min_p must be at most 1 (got %g)", p->min_p);
    if (!(p->repeat_penalty > 0) || isinf(p->repeat_penalty))
        return thaw_errf(err, THAW_EINVAL, "sampling: repeat_penalty must be above 0 (got %g)",
                         p->repeat_penalty);
    if (p->penalty_last_n < 0 || p->penalty_last_n > (1 << 20))
        return thaw_errf(err, THAW_EINVAL, "sampling: penalty_last_n must be 0..%d", 1 << 20);
    if (p->n_logprobs < 0 || p->n_logprobs > SAMPLER_MAX_LOGPROBS)
        return thaw_errf(err, THAW_EINVAL, "sampling: logprobs must be 0..%d",
                         SAMPLER_MAX_LOGPROBS);
    return 0;
}

int sampler_new(const struct engine_sampling_params *p, struct engine_sampler **out,
                struct thaw_err *err)
{
    *out = NULL;
    int rc = check_params(p, err);
    if (rc) return rc;
    struct engine_sampler *s = calloc(1, sizeof(*s));
    if (!s) return thaw_errf(err, THAW_ENOMEM, "out of memory");
    s->p = *p;
    s->seed = p->seed;
    if (s->seed == SAMPLER_SEED_RANDOM && random_bytes(&s->seed, sizeof(s->seed)) != 0)
        s->seed = time_now_ns();
    if (p->penalty_last_n > 0) {
        s->window = malloc((size_t)p->penalty_last_n * sizeof(*s->window));
        s->counts = malloc((size_t)p->penalty_last_n * sizeof(*s->counts));
        if (!s->window || !s->counts) {
            sampler_free(s);
            return thaw_errf(err, THAW_ENOMEM, "out of memory");
        }
    }
    reseed(s);
    *out = s;
    return 0;
}

void sampler_free(struct engine_sampler *s)
{
    if (!s) return;
    free(s->window);
    free(s->counts);
    free(s->cand);
    free(s);
}

void sampler_reset(struct engine_sampler *s)
{
    s->n_window = s->head = 0;
    reseed(s);
}

void sampler_accept(struct engine_sampler *s, int32_t token)
{
    size_t cap = (size_t)s->p.penalty_last_n;
    if (cap == 0) return;
    s->window[s->head] = token;
    s->head = (s->head + 1) % cap;
    if (s->n_window < cap) s->n_window++;
}

/* ------------------------------------------------------------- selection */

static bool better(const struct cand *a, const struct cand *b)
{
    return a->logit > b->logit || (a->logit == b->logit && a->id < b->id);
}

static int cand_cmp(const void *a, const void *b)
{
    const struct cand *x = a, *y = b;
    return better(x, y) ? -1 : better(y, x) ? 1 : 0;
}

static void swap(struct cand *a, struct cand *b)
{
    struct cand t = *a;
    *a = *b;
    *b = t;
}

/* Moves the m best candidates to the front, sorted (quickselect, then a sort
 * of the m). */
static void select_top(struct cand *c, size_t n, size_t m)
{
    if (m >= n) {
        qsort(c, n, sizeof(*c), cand_cmp);
        return;
    }
    size_t lo = 0, hi = n - 1;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        /* median of three as pivot, parked at hi */
        if (better(&c[mid], &c[lo])) swap(&c[mid], &c[lo]);
        if (better(&c[hi], &c[lo])) swap(&c[hi], &c[lo]);
        if (better(&c[mid], &c[hi])) swap(&c[mid], &c[hi]);
        struct cand pivot = c[hi];
        size_t store = lo;
        for (size_t i = lo; i < hi; i++)
            if (better(&c[i], &pivot)) swap(&c[i], &c[store++]);
        swap(&c[store], &c[hi]);
        if (store == m) break;
        if (store < m)
            lo = store + 1;
        else
            hi = store - 1;
    }
    qsort(c, m, sizeof(*c), cand_cmp);
}

static int cmp_i32(const void *a, const void *b)
{
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

/* +inf would make exp(l - max) NaN; the largest float keeps the order. */
static float finite_top(float x)
{
    return x > FLT_MAX ? FLT_MAX : x;
}

/* Penalties from the window, on candidates still indexed by id. */
static void apply_penalties(struct engine_sampler *s, struct cand *c, int32_t n_vocab)
{
    const struct engine_sampling_params *p = &s->p;
    if (s->n_window == 0 ||
        (p->repeat_penalty == 1.0f && p->frequency_penalty == 0 && p->presence_penalty == 0))
        return;
    memcpy(s->counts, s->window, s->n_window * sizeof(*s->counts));
    qsort(s->counts, s->n_window, sizeof(*s->counts), cmp_i32);
    for (size_t i = 0; i < s->n_window;) {
        size_t j = i;
        while (j < s->n_window && s->counts[j] == s->counts[i])
            j++;
        int32_t t = s->counts[i];
        if (t >= 0 && t < n_vocab) {
            float l = c[t].logit;
            l = l > 0 ? l / p->repeat_penalty : l * p->repeat_penalty;
            c[t].logit = l - (float)(j - i) * p->frequency_penalty - p->presence_penalty;
        }
        i = j;
    }
}

static void fill_logprobs(const struct engine_sampler *s, const float *logits, int32_t n_vocab,
                          int32_t token, struct sampler_logprobs *lp)
{
    double mx = -INFINITY, sum = 0;
    for (int32_t i = 0; i < n_vocab; i++)
        if (finite_top(logits[i]) > mx) mx = finite_top(logits[i]);
    for (int32_t i = 0; i < n_vocab; i++)
        if (logits[i] > -INFINITY) sum += exp((double)finite_top(logits[i]) - mx);
    double lse = mx + log(sum);
    float lt = finite_top(logits[token]);
    lp->token_logprob = isnan(lt) ? -INFINITY : (float)((double)lt - lse);
    lp->n_top = 0;
    /* insertion into a short sorted list: n_logprobs is at most 20 */
    for (int32_t i = 0; i < n_vocab; i++) {
        struct cand x = {i, finite_top(logits[i])};
        int32_t k = lp->n_top;
        if (isnan(x.logit)) continue;
        if (k == s->p.n_logprobs) {
            struct cand last = {lp->top[k - 1].token, lp->top[k - 1].logprob};
            if (!better(&x, &last)) continue;
            k--;
        } else {
            lp->n_top++;
        }
        while (k > 0) {
            struct cand prev = {lp->top[k - 1].token, lp->top[k - 1].logprob};
            if (!better(&x, &prev)) break;
            lp->top[k] = lp->top[k - 1];
            k--;
        }
        lp->top[k] = (struct sampler_logprob){x.id, x.logit};
    }
    for (int32_t k = 0; k < lp->n_top; k++)
        lp->top[k].logprob = (float)((double)lp->top[k].logprob - lse);
}

/* Keeps the smallest prefix of the sorted-on-demand candidates whose mass
 * reaches top_p; probabilities are relative to all n candidates. */
static size_t cut_top_p(struct cand *c, size_t n, float top_p)
{
    double mx = c[0].logit, total = 0;
    for (size_t i = 1; i < n; i++)
        if (c[i].logit > mx) mx = c[i].logit;
    for (size_t i = 0; i < n; i++)
        total += exp((double)c[i].logit - mx);
    for (size_t m = 64;; m *= 4) {
        m = MIN(m, n);
        select_top(c, n, m);
        double acc = 0;
        for (size_t i = 0; i < m; i++) {
            acc += exp((double)c[i].logit - mx);
            if (acc >= top_p * total) return i + 1;
        }
        if (m == n) return n;
    }
}

int sampler_sample(struct engine_sampler *s, const float *logits, int32_t n_vocab, int32_t *token,
                   struct sampler_logprobs *lp)
{
    const struct engine_sampling_params *p = &s->p;
    if (n_vocab <= 0) return THAW_EINVAL;
    if ((size_t)n_vocab > s->cap) {
        struct cand *c = realloc(s->cand, (size_t)n_vocab * sizeof(*c));
        if (!c) return THAW_ENOMEM;
        s->cand = c, s->cap = (size_t)n_vocab;
    }
    struct cand *c = s->cand;
    for (int32_t i = 0; i < n_vocab; i++)
        c[i] = (struct cand){i, finite_top(logits[i])};
    apply_penalties(s, c, n_vocab);
    size_t n = 0;
    for (int32_t i = 0; i < n_vocab; i++) /* NaN and -inf can never be drawn */
        if (c[i].logit > -INFINITY) c[n++] = c[i];
    if (n == 0) return THAW_EINVAL;
    if (p->temperature <= 0) {
        size_t best = 0;
        for (size_t i = 1; i < n; i++)
            if (better(&c[i], &c[best])) best = i;
        *token = c[best].id;
    } else {
        for (size_t i = 0; i < n; i++)
            c[i].logit = finite_top(c[i].logit / p->temperature);
        if (p->top_k > 0 && (size_t)p->top_k < n) {
            select_top(c, n, (size_t)p->top_k);
            n = (size_t)p->top_k;
        }
        if (p->top_p < 1.0f) n = cut_top_p(c, n, p->top_p);
        double mx = c[0].logit;
        for (size_t i = 1; i < n; i++)
            if (c[i].logit > mx) mx = c[i].logit;
        if (p->min_p > 0) { /* p_i >= min_p * p_max  <=>  l_i >= l_max + log(min_p) */
            double floor_l = mx + log((double)p->min_p);
            size_t k = 0;
            for (size_t i = 0; i < n; i++)
                if (c[i].logit >= floor_l) c[k++] = c[i];
            n = k;
        }
        double total = 0;
        for (size_t i = 0; i < n; i++)
            total += exp((double)c[i].logit - mx);
        double u = uniform(s->rng) * total, acc = 0;
        size_t pick = n - 1;
        for (size_t i = 0; i < n; i++) {
            acc += exp((double)c[i].logit - mx);
            if (u < acc) {
                pick = i;
                break;
            }
        }
        *token = c[pick].id;
    }
    if (lp) {
        if (p->n_logprobs > 0)
            fill_logprobs(s, logits, n_vocab, *token, lp);
        else
            memset(lp, 0, sizeof(*lp));
    }
    return 0;
}

/* ---------------------------------------------------------- stop strings */

struct sampler_stop {
    char **stops;
    size_t *lens;
    size_t n;
    struct buf held; /* text that may be the start of a stop string */
    bool stopped;
};

int sampler_stop_new(const char *const *stops, size_t n, struct sampler_stop **out)
{
    struct sampler_stop *st = calloc(1, sizeof(*st));
    *out = NULL;
    if (!st) return THAW_ENOMEM;
    st->stops = calloc(n + 1, sizeof(*st->stops));
    st->lens = calloc(n + 1, sizeof(*st->lens));
    if (!st->stops || !st->lens) goto out_free;
    for (size_t i = 0; i < n; i++) {
        if (!stops[i] || !stops[i][0]) continue;
        if (!(st->stops[st->n] = str_dup(stops[i]))) goto out_free;
        st->lens[st->n++] = strlen(stops[i]);
    }
    *out = st;
    return 0;
out_free:
    sampler_stop_free(st);
    return THAW_ENOMEM;
}

void sampler_stop_free(struct sampler_stop *st)
{
    if (!st) return;
    for (size_t i = 0; st->stops && i < st->n; i++)
        free(st->stops[i]);
    free(st->stops);
    free(st->lens);
    buf_free(&st->held);
    free(st);
}

/* Longest suffix of s that is a proper prefix of some stop string. */
static size_t partial_suffix(const struct sampler_stop *st, const char *s, size_t n)
{
    size_t best = 0;
    for (size_t k = 0; k < st->n; k++) {
        size_t max = MIN(n, st->lens[k] - 1);
        for (size_t l = max; l > best; l--) {
            if (memcmp(s + n - l, st->stops[k], l) == 0) {
                best = l;
                break;
            }
        }
    }
    return best;
}

int sampler_stop_push(struct sampler_stop *st, const char *text, size_t len, struct buf *out)
{
    if (st->stopped) return 1;
    if (buf_append(&st->held, text, len) != 0) return THAW_ENOMEM;
    const char *s = st->held.data;
    size_t n = st->held.len, cut = SIZE_MAX;
    for (size_t k = 0; k < st->n; k++) {
        const char *hit = memmem(s, n, st->stops[k], st->lens[k]);
        if (hit && (size_t)(hit - s) < cut) cut = (size_t)(hit - s);
    }
    if (cut != SIZE_MAX) {
        st->stopped = true;
        int rc = buf_append(out, s, cut);
        buf_reset(&st->held);
        return rc ? rc : 1;
    }
    size_t keep = partial_suffix(st, s, n);
    if (buf_append(out, s, n - keep) != 0) return THAW_ENOMEM;
    buf_consume(&st->held, n - keep);
    return 0;
}

int sampler_stop_flush(struct sampler_stop *st, struct buf *out)
{
    int rc = st->stopped ? 0 : buf_append(out, st->held.data ? st->held.data : "", st->held.len);
    buf_reset(&st->held);
    return rc;
}
