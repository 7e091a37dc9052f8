/*
 * auth/index.c - who is signed in, in memory: users by name, sessions by id,
 * API tokens by the SHA-256 of the token, and the ticket nonces already
 * claimed. Requests on any thread look things up under a read lock; the
 * control loop changes the tables under the write lock. Marking a session
 * or a token used happens under the read lock, so those timestamps are
 * atomics. Claimed nonces have their own mutex, so that a claim never waits
 * for the tables.
 */
#define LOG_MOD "auth"

#include "auth/index.h"

#include <inttypes.h>
#include <openssl/crypto.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "auth/auth.h"
#include "util/err.h"
#include "util/log.h"
#include "util/xmalloc.h"

#define SESSION_ID_LEN 32     /* hex digits of a session id */
#define SESSION_SECRET_LEN 43 /* base64url characters of 32 random bytes */
#define HASH_HEX_LEN 64       /* hex digits of a SHA-256 */
#define NONCE_LEN 32          /* hex digits of a ticket nonce */
#define NONCES_MAX 100000     /* claimed nonces kept at most: tickets live seconds */
#define BEARER_MAX 256        /* longer bearer values are not our tokens: not hashed */
#define AUTH_RECHECK_MAX_MS 1000 /* auth_index_recheck_ms at most */
#define HTAB_MIN_SLOTS 16

/* ------------------------------------------------------------- hash tables */

/* A chained hash table of nodes embedded in their objects; the key is a
 * string inside the object. Grows at a load of 1, never shrinks. */
struct hnode {
    struct hnode *next;
    uint64_t hash;
    const char *key;
};

struct htab {
    struct hnode **slots;
    size_t n_slots; /* a power of two */
    size_t count;
};

/* FNV-1a: keys are random ids, hashes of secrets, or names admins chose. */
static uint64_t
hash_str(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ULL;

    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 0x100000001b3ULL;
    }
    return h;
}

static void
htab_init(struct htab *t)
{
    t->n_slots = HTAB_MIN_SLOTS;
    t->slots = xcalloc(t->n_slots, sizeof(*t->slots));
    t->count = 0;
}

static void
htab_release(struct htab *t)
{
    free(t->slots);
    t->slots = NULL;
    t->n_slots = 0;
    t->count = 0;
}

static struct hnode *
htab_find(const struct htab *t, const char *key)
{
    uint64_t h = hash_str(key);

    for (struct hnode *n = t->slots[h & (t->n_slots - 1)]; n != NULL; n = n->next) {
        if (n->hash == h && strcmp(n->key, key) == 0)
            return n;
    }
    return NULL;
}

static void
htab_grow(struct htab *t)
{
    size_t n_slots = t->n_slots * 2;
    struct hnode **slots = xcalloc(n_slots, sizeof(*slots));

    for (size_t i = 0; i < t->n_slots; i++) {
        struct hnode *n = t->slots[i];

        while (n != NULL) {
            struct hnode *next = n->next;
            size_t at = n->hash & (n_slots - 1);

            n->next = slots[at];
            slots[at] = n;
            n = next;
        }
    }
    free(t->slots);
    t->slots = slots;
    t->n_slots = n_slots;
}

/* Adds n under `key` (a string inside n's object); the caller made sure the
 * key is not there yet. */
static void
htab_add(struct htab *t, struct hnode *n, const char *key)
{
    size_t at;

    if (t->count + 1 > t->n_slots)
        htab_grow(t);
    n->key = key;
    n->hash = hash_str(key);
    at = n->hash & (t->n_slots - 1);
    n->next = t->slots[at];
    t->slots[at] = n;
    t->count++;
}

static void
htab_unlink(struct htab *t, struct hnode *n)
{
    struct hnode **pp = &t->slots[n->hash & (t->n_slots - 1)];

    while (*pp != NULL && *pp != n)
        pp = &(*pp)->next;
    EPH_ASSERT(*pp == n);
    *pp = n->next;
    n->next = NULL;
    t->count--;
}

/* Iterates every node; the body may unlink and free the current one. */
#define HTAB_EACH(t, n, next_)                                                                     \
    for (size_t i_ = 0; i_ < (t)->n_slots; i_++)                                                   \
        for (struct hnode *n = (t)->slots[i_], *next_ = n ? n->next : NULL; n != NULL;             \
             n = next_, next_ = n ? n->next : NULL)

/* ------------------------------------------------------------- objects */

struct user {
    struct hnode node; /* by name */
    char name[AUTH_USER_MAX];
    char email[AUTH_EMAIL_MAX];
    enum role role;
};

struct session {
    struct hnode node; /* by id */
    char id[AUTH_SESSION_ID_HEX];
    char secret_hash[AUTH_HASH_HEX];
    char user[AUTH_USER_MAX]; /* looked up on each check: role changes apply at once */
    int64_t created_ms;
    int64_t expires_ms;           /* wall clock, absolute end */
    _Atomic int64_t last_seen_ms; /* moved forward under the read lock */
    _Atomic int64_t reported_ms;  /* last_seen_ms as auth_index_take_usage last saw it */
};

struct token {
    struct hnode node; /* by hash */
    int64_t id;
    char name[AUTH_USER_MAX];
    char hash[AUTH_HASH_HEX];
    char user[AUTH_USER_MAX];
    enum role role_cap;
    int64_t expires_ms;           /* 0: never */
    _Atomic int64_t last_used_ms; /* 0: not since put */
    _Atomic int64_t reported_ms;
};

struct nonce {
    struct hnode node;
    char nonce[NONCE_LEN + 1];
    int64_t expires_ms; /* the ticket's: forgotten after */
};

struct auth_index {
    pthread_rwlock_t lock; /* users, sessions, tokens */
    /* Moves on at the end of every change under the write lock (see
     * auth_index_version). */
    _Atomic uint64_t version;
    int64_t idle_ms;       /* <= 0: no idle limit */
    struct htab users;
    struct htab sessions;
    struct htab tokens;

    pthread_mutex_t nonce_mu; /* nonces, nonces_full_logged */
    struct htab nonces;
    bool nonces_full_logged; /* "set full" is logged once until it has room again */
};

#define USER_OF(n) container_of(n, struct user, node)
#define SESSION_OF(n) container_of(n, struct session, node)
#define TOKEN_OF(n) container_of(n, struct token, node)
#define NONCE_OF(n) container_of(n, struct nonce, node)

static bool
is_lower_hex(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    }
    return true;
}

static bool
is_b64url(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        char c = s[i];

        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_'))
            return false;
    }
    return true;
}

/* A NUL-terminated string of exactly `len` lower-case hex digits. */
static bool
is_hex_string(const char *s, size_t len)
{
    return s != NULL && strnlen(s, len + 1) == len && is_lower_hex(s, len);
}

/* Copies s into dst[max] if it fits with its NUL. */
static bool
copy_str(char *dst, size_t max, const char *s)
{
    size_t n;

    if (s == NULL)
        return false;
    n = strnlen(s, max);
    if (n >= max)
        return false;
    memcpy(dst, s, n + 1);
    return true;
}

/* Moves *at forward to now; never back, whichever thread is faster. */
static void
touch(_Atomic int64_t *at, int64_t now_ms)
{
    int64_t cur = atomic_load_explicit(at, memory_order_relaxed);

    while (cur < now_ms && !atomic_compare_exchange_weak_explicit(
                               at, &cur, now_ms, memory_order_relaxed, memory_order_relaxed)) {
    }
}

/* Ends a change: the version moves on before the write lock is let go. */
static void
write_unlock(struct auth_index *ix)
{
    atomic_fetch_add_explicit(&ix->version, 1, memory_order_release);
    pthread_rwlock_unlock(&ix->lock);
}

static struct user *
find_user(struct auth_index *ix, const char *name)
{
    struct hnode *n = htab_find(&ix->users, name);

    return n ? USER_OF(n) : NULL;
}

static struct session *
find_session(struct auth_index *ix, const char *id)
{
    struct hnode *n = htab_find(&ix->sessions, id);

    return n ? SESSION_OF(n) : NULL;
}

static struct token *
find_token_by_id(struct auth_index *ix, int64_t id)
{
    HTAB_EACH(&ix->tokens, n, next)
    {
        if (TOKEN_OF(n)->id == id)
            return TOKEN_OF(n);
    }
    return NULL;
}

static void
drop_session(struct auth_index *ix, struct session *s)
{
    htab_unlink(&ix->sessions, &s->node);
    OPENSSL_cleanse(s->secret_hash, sizeof(s->secret_hash));
    free(s);
}

static void
drop_token(struct auth_index *ix, struct token *t)
{
    htab_unlink(&ix->tokens, &t->node);
    OPENSSL_cleanse(t->hash, sizeof(t->hash));
    free(t);
}

/* ------------------------------------------------------------- life */

struct auth_index *
auth_index_new(int64_t idle_ms)
{
    struct auth_index *ix = xcalloc(1, sizeof(*ix));
    pthread_rwlockattr_t attr;

    /* glibc's readers-first default would let a stream of proxied requests
     * keep a revocation waiting; writers go first instead. */
    EPH_ASSERT(pthread_rwlockattr_init(&attr) == 0);
    EPH_ASSERT(pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP) ==
               0);
    EPH_ASSERT(pthread_rwlock_init(&ix->lock, &attr) == 0);
    pthread_rwlockattr_destroy(&attr);
    EPH_ASSERT(pthread_mutex_init(&ix->nonce_mu, NULL) == 0);
    ix->idle_ms = idle_ms;
    htab_init(&ix->users);
    htab_init(&ix->sessions);
    htab_init(&ix->tokens);
    htab_init(&ix->nonces);
    return ix;
}

void
auth_index_free(struct auth_index *ix)
{
    if (ix == NULL)
        return;
    HTAB_EACH(&ix->sessions, n, next)
    {
        drop_session(ix, SESSION_OF(n));
    }
    HTAB_EACH(&ix->tokens, n, next)
    {
        drop_token(ix, TOKEN_OF(n));
    }
    HTAB_EACH(&ix->users, n, next)
    {
        free(USER_OF(n));
    }
    HTAB_EACH(&ix->nonces, n, next)
    {
        free(NONCE_OF(n));
    }
    htab_release(&ix->users);
    htab_release(&ix->sessions);
    htab_release(&ix->tokens);
    htab_release(&ix->nonces);
    pthread_rwlock_destroy(&ix->lock);
    pthread_mutex_destroy(&ix->nonce_mu);
    free(ix);
}

/* ------------------------------------------------------------- changes */

void
auth_index_put_user(struct auth_index *ix, const struct auth_user_rec *u)
{
    struct user fresh = {0};
    struct user *old;

    if (!copy_str(fresh.name, sizeof(fresh.name), u->name) || fresh.name[0] == '\0' ||
        !copy_str(fresh.email, sizeof(fresh.email), u->email ? u->email : "")) {
        log_warn("user not indexed", "reason=%s", "name or email too long");
        return;
    }
    fresh.role = u->role;
    pthread_rwlock_wrlock(&ix->lock);
    old = find_user(ix, fresh.name);
    if (old != NULL) {
        memcpy(old->email, fresh.email, sizeof(old->email));
        old->role = fresh.role;
    } else {
        struct user *nu = xmalloc(sizeof(*nu));

        *nu = fresh;
        htab_add(&ix->users, &nu->node, nu->name);
    }
    write_unlock(ix);
}

void
auth_index_remove_user(struct auth_index *ix, const char *name)
{
    struct user *u;

    if (name == NULL)
        return;
    pthread_rwlock_wrlock(&ix->lock);
    u = find_user(ix, name);
    if (u != NULL) {
        HTAB_EACH(&ix->sessions, n, next)
        {
            if (strcmp(SESSION_OF(n)->user, name) == 0)
                drop_session(ix, SESSION_OF(n));
        }
        HTAB_EACH(&ix->tokens, n, next)
        {
            if (strcmp(TOKEN_OF(n)->user, name) == 0)
                drop_token(ix, TOKEN_OF(n));
        }
        htab_unlink(&ix->users, &u->node);
        free(u);
    }
    write_unlock(ix);
}

void
auth_index_put_session(struct auth_index *ix, const struct auth_session_rec *s)
{
    struct session *ns;
    struct session *old;

    if (!is_hex_string(s->id, SESSION_ID_LEN) || !is_hex_string(s->secret_hash, HASH_HEX_LEN)) {
        log_warn("session not indexed", "reason=%s", "malformed id or secret hash");
        return;
    }
    ns = xcalloc(1, sizeof(*ns));
    memcpy(ns->id, s->id, SESSION_ID_LEN + 1);
    memcpy(ns->secret_hash, s->secret_hash, HASH_HEX_LEN + 1);
    if (!copy_str(ns->user, sizeof(ns->user), s->user)) {
        log_warn("session not indexed", "session=%s reason=%s", ns->id, "user name too long");
        free(ns);
        return;
    }
    ns->created_ms = s->created_ms;
    ns->expires_ms = s->expires_ms;
    /* As the store has it: nothing to report back until it is used again. */
    atomic_init(&ns->last_seen_ms, s->last_seen_ms);
    atomic_init(&ns->reported_ms, s->last_seen_ms);

    pthread_rwlock_wrlock(&ix->lock);
    if (find_user(ix, ns->user) == NULL) {
        write_unlock(ix);
        log_warn("session not indexed", "session=%s user=%s reason=%s", ns->id, log_q(ns->user),
                 "unknown user");
        free(ns);
        return;
    }
    old = find_session(ix, ns->id);
    if (old != NULL)
        drop_session(ix, old);
    htab_add(&ix->sessions, &ns->node, ns->id);
    write_unlock(ix);
}

void
auth_index_remove_session(struct auth_index *ix, const char *id)
{
    struct session *s;

    if (id == NULL)
        return;
    pthread_rwlock_wrlock(&ix->lock);
    s = find_session(ix, id);
    if (s != NULL)
        drop_session(ix, s);
    write_unlock(ix);
}

void
auth_index_put_token(struct auth_index *ix, const struct auth_token_rec *t)
{
    struct token *nt;
    struct token *old;
    struct hnode *same_hash;

    if (!is_hex_string(t->hash, HASH_HEX_LEN)) {
        log_warn("token not indexed", "token_id=%" PRId64 " reason=%s", t->id, "malformed hash");
        return;
    }
    nt = xcalloc(1, sizeof(*nt));
    if (!copy_str(nt->name, sizeof(nt->name), t->name ? t->name : "") ||
        !copy_str(nt->user, sizeof(nt->user), t->user)) {
        log_warn("token not indexed", "token_id=%" PRId64 " reason=%s", t->id,
                 "name or user too long");
        free(nt);
        return;
    }
    nt->id = t->id;
    memcpy(nt->hash, t->hash, HASH_HEX_LEN + 1);
    nt->role_cap = t->role_cap;
    nt->expires_ms = t->expires_ms;
    atomic_init(&nt->last_used_ms, 0);
    atomic_init(&nt->reported_ms, 0);

    pthread_rwlock_wrlock(&ix->lock);
    if (find_user(ix, nt->user) == NULL) {
        write_unlock(ix);
        log_warn("token not indexed", "token_id=%" PRId64 " user=%s reason=%s", nt->id,
                 log_q(nt->user), "unknown user");
        free(nt);
        return;
    }
    /* Replaces the token of that id, and whatever held the same hash. */
    old = find_token_by_id(ix, nt->id);
    if (old != NULL)
        drop_token(ix, old);
    same_hash = htab_find(&ix->tokens, nt->hash);
    if (same_hash != NULL)
        drop_token(ix, TOKEN_OF(same_hash));
    htab_add(&ix->tokens, &nt->node, nt->hash);
    write_unlock(ix);
}

void
auth_index_remove_token(struct auth_index *ix, int64_t id)
{
    struct token *t;

    pthread_rwlock_wrlock(&ix->lock);
    t = find_token_by_id(ix, id);
    if (t != NULL)
        drop_token(ix, t);
    write_unlock(ix);
}

/* ------------------------------------------------------------- checks */

/* The session's user if it is live at now_ms; read lock held. */
static const struct user *
session_live(struct auth_index *ix, struct session *s, int64_t now_ms)
{
    int64_t last = atomic_load_explicit(&s->last_seen_ms, memory_order_relaxed);

    if (now_ms >= s->expires_ms)
        return NULL;
    if (ix->idle_ms > 0 && now_ms - last >= ix->idle_ms)
        return NULL;
    return find_user(ix, s->user);
}

static void
fill_session_who(const struct user *u, const struct session *s, struct auth_who *out)
{
    memset(out, 0, sizeof(*out));
    memcpy(out->user, u->name, sizeof(out->user));
    memcpy(out->email, u->email, sizeof(out->email));
    out->role = u->role;
    memcpy(out->session_id, s->id, sizeof(out->session_id));
    out->session_expires_ms = s->expires_ms;
}

/* Looks up session `id` (and, if hash is not NULL, compares its secret's hash
 * in constant time); fills *out and marks it used if live. */
static bool
check_session(struct auth_index *ix, const char *id, const char *hash, int64_t now_ms,
              struct auth_who *out)
{
    struct auth_who who;
    struct session *s;
    const struct user *u = NULL;
    bool ok = false;

    pthread_rwlock_rdlock(&ix->lock);
    s = find_session(ix, id);
    if (s != NULL &&
        (hash == NULL || auth_equal_ct(s->secret_hash, HASH_HEX_LEN, hash, HASH_HEX_LEN)))
        u = session_live(ix, s, now_ms);
    if (u != NULL) {
        fill_session_who(u, s, &who);
        touch(&s->last_seen_ms, now_ms);
        ok = true;
    }
    pthread_rwlock_unlock(&ix->lock);
    if (out != NULL) {
        if (ok)
            *out = who;
        else
            memset(out, 0, sizeof(*out));
    }
    return ok;
}

bool
auth_index_check_session_cookie(struct auth_index *ix, const char *value, size_t len,
                                int64_t now_ms, struct auth_who *out)
{
    char id[SESSION_ID_LEN + 1];
    char secret[SESSION_SECRET_LEN + 1];
    char hash[AUTH_HASH_HEX];
    bool ok;

    if (value == NULL || len != SESSION_ID_LEN + 1 + SESSION_SECRET_LEN ||
        value[SESSION_ID_LEN] != '.' || !is_lower_hex(value, SESSION_ID_LEN) ||
        !is_b64url(value + SESSION_ID_LEN + 1, SESSION_SECRET_LEN)) {
        if (out != NULL)
            memset(out, 0, sizeof(*out));
        return false;
    }
    memcpy(id, value, SESSION_ID_LEN);
    id[SESSION_ID_LEN] = '\0';
    memcpy(secret, value + SESSION_ID_LEN + 1, SESSION_SECRET_LEN);
    secret[SESSION_SECRET_LEN] = '\0';
    auth_token_hash(secret, hash); /* outside the lock: the one costly step */
    OPENSSL_cleanse(secret, sizeof(secret));
    ok = check_session(ix, id, hash, now_ms, out);
    OPENSSL_cleanse(hash, sizeof(hash));
    return ok;
}

uint64_t
auth_index_version(struct auth_index *ix)
{
    return atomic_load_explicit(&ix->version, memory_order_acquire);
}

int64_t
auth_index_recheck_ms(const struct auth_index *ix)
{
    if (ix->idle_ms > 0 && ix->idle_ms / 4 < AUTH_RECHECK_MAX_MS)
        return ix->idle_ms / 4;
    return AUTH_RECHECK_MAX_MS;
}

bool
auth_index_check_session_id(struct auth_index *ix, const char *id, int64_t now_ms,
                            struct auth_who *out)
{
    if (!is_hex_string(id, SESSION_ID_LEN)) {
        if (out != NULL)
            memset(out, 0, sizeof(*out));
        return false;
    }
    return check_session(ix, id, NULL, now_ms, out);
}

bool
auth_index_check_token(struct auth_index *ix, const char *token, int64_t now_ms,
                       struct auth_who *out)
{
    struct auth_who who;
    char hash[AUTH_HASH_HEX];
    struct hnode *n;
    bool ok = false;

    if (token == NULL || token[0] == '\0' || strnlen(token, BEARER_MAX + 1) > BEARER_MAX)
        goto out;
    auth_token_hash(token, hash);
    pthread_rwlock_rdlock(&ix->lock);
    n = htab_find(&ix->tokens, hash);
    if (n != NULL) {
        struct token *t = TOKEN_OF(n);
        const struct user *u = find_user(ix, t->user);

        if (u != NULL && (t->expires_ms == 0 || now_ms < t->expires_ms)) {
            memset(&who, 0, sizeof(who));
            memcpy(who.user, u->name, sizeof(who.user));
            memcpy(who.email, u->email, sizeof(who.email));
            who.role = u->role < t->role_cap ? u->role : t->role_cap;
            who.token_id = t->id;
            memcpy(who.token_name, t->name, sizeof(who.token_name));
            touch(&t->last_used_ms, now_ms);
            ok = true;
        }
    }
    pthread_rwlock_unlock(&ix->lock);
    OPENSSL_cleanse(hash, sizeof(hash));
out:
    if (out != NULL) {
        if (ok)
            *out = who;
        else
            memset(out, 0, sizeof(*out));
    }
    return ok;
}

/* ------------------------------------------------------------- ticket nonces */

/* Forgets nonces whose tickets have expired; nonce_mu held. */
static void
drop_expired_nonces(struct auth_index *ix, int64_t now_ms)
{
    HTAB_EACH(&ix->nonces, n, next)
    {
        if (NONCE_OF(n)->expires_ms <= now_ms) {
            htab_unlink(&ix->nonces, n);
            free(NONCE_OF(n));
        }
    }
}

bool
auth_index_ticket_claim(struct auth_index *ix, const char *nonce, int64_t expires_ms,
                        int64_t now_ms)
{
    struct nonce *nn;
    bool ok = false;

    /* An expired ticket is refused anyway; keeping its nonce would only fill
     * the set. */
    if (!is_hex_string(nonce, NONCE_LEN) || expires_ms <= now_ms)
        return false;
    pthread_mutex_lock(&ix->nonce_mu);
    if (htab_find(&ix->nonces, nonce) != NULL)
        goto out;
    if (ix->nonces.count >= NONCES_MAX)
        drop_expired_nonces(ix, now_ms);
    if (ix->nonces.count >= NONCES_MAX) {
        /* Fail closed: forgetting a live nonce would let its ticket work twice. */
        if (!ix->nonces_full_logged)
            log_warn("ticket refused", "reason=%s max=%d", "nonce set full", NONCES_MAX);
        ix->nonces_full_logged = true;
        goto out;
    }
    ix->nonces_full_logged = false;
    nn = xmalloc(sizeof(*nn));
    memcpy(nn->nonce, nonce, NONCE_LEN + 1);
    nn->expires_ms = expires_ms;
    htab_add(&ix->nonces, &nn->node, nn->nonce);
    ok = true;
out:
    pthread_mutex_unlock(&ix->nonce_mu);
    return ok;
}

/* ------------------------------------------------------------- upkeep */

struct usage {
    char kind;                    /* 's' or 't' */
    char id[AUTH_SESSION_ID_HEX]; /* session id, or token id in decimal */
    int64_t last_used_ms;
};

/* A growable list of usages, filled under the lock and reported after it, so
 * that callbacks may take their time and even call back into the index. */
struct usage_list {
    struct usage *items;
    size_t n;
    size_t cap;
};

static struct usage *
usage_push(struct usage_list *l)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 16;
        l->items = xrealloc(l->items, l->cap * sizeof(*l->items));
    }
    return &l->items[l->n++];
}

/* True (and *last set) if `last_used` moved since it was last reported. */
static bool
usage_changed(_Atomic int64_t *last_used, _Atomic int64_t *reported, int64_t *last)
{
    int64_t now_last = atomic_load_explicit(last_used, memory_order_relaxed);
    int64_t was = atomic_exchange_explicit(reported, now_last, memory_order_relaxed);

    *last = now_last;
    return was != now_last;
}

void
auth_index_take_usage(struct auth_index *ix, auth_usage_fn *fn, void *arg)
{
    struct usage_list l = {0};

    pthread_rwlock_rdlock(&ix->lock);
    HTAB_EACH(&ix->sessions, n, next)
    {
        struct session *s = SESSION_OF(n);
        int64_t last;

        if (usage_changed(&s->last_seen_ms, &s->reported_ms, &last)) {
            struct usage *u = usage_push(&l);

            u->kind = 's';
            memcpy(u->id, s->id, sizeof(u->id));
            u->last_used_ms = last;
        }
    }
    HTAB_EACH(&ix->tokens, n, next)
    {
        struct token *t = TOKEN_OF(n);
        int64_t last;

        if (usage_changed(&t->last_used_ms, &t->reported_ms, &last)) {
            struct usage *u = usage_push(&l);

            u->kind = 't';
            snprintf(u->id, sizeof(u->id), "%" PRId64, t->id);
            u->last_used_ms = last;
        }
    }
    pthread_rwlock_unlock(&ix->lock);
    for (size_t i = 0; i < l.n; i++)
        fn(arg, l.items[i].kind, l.items[i].id, l.items[i].last_used_ms);
    free(l.items);
}

void
auth_index_expire(struct auth_index *ix, int64_t now_ms, auth_expired_fn *fn, void *arg)
{
    struct usage_list l = {0};

    pthread_rwlock_wrlock(&ix->lock);
    HTAB_EACH(&ix->sessions, n, next)
    {
        struct session *s = SESSION_OF(n);
        int64_t last = atomic_load_explicit(&s->last_seen_ms, memory_order_relaxed);

        if (now_ms >= s->expires_ms || (ix->idle_ms > 0 && now_ms - last >= ix->idle_ms)) {
            struct usage *u = usage_push(&l);

            u->kind = 's';
            memcpy(u->id, s->id, sizeof(u->id));
            u->last_used_ms = last;
            drop_session(ix, s);
        }
    }
    write_unlock(ix);

    pthread_mutex_lock(&ix->nonce_mu);
    drop_expired_nonces(ix, now_ms);
    pthread_mutex_unlock(&ix->nonce_mu);

    if (fn != NULL) {
        for (size_t i = 0; i < l.n; i++)
            fn(arg, l.items[i].id);
    }
    free(l.items);
}

size_t
auth_index_sessions(struct auth_index *ix)
{
    size_t n;

    pthread_rwlock_rdlock(&ix->lock);
    n = ix->sessions.count;
    pthread_rwlock_unlock(&ix->lock);
    return n;
}

size_t
auth_index_tokens(struct auth_index *ix)
{
    size_t n;

    pthread_rwlock_rdlock(&ix->lock);
    n = ix->tokens.count;
    pthread_rwlock_unlock(&ix->lock);
    return n;
}
