/*
 * store/store_int.h - what the store's own files share, and nothing outside
 * src/store/ includes: the schema migrator (schema.c) that store.c runs at open.
 */
#ifndef EPH_STORE_STORE_INT_H
#define EPH_STORE_STORE_INT_H

#include <sqlite3.h>

#include "util/err.h"

/* The schema version this build writes: the last migration step's. */
int store__schema_latest(void);

/*
 * Brings the database `db` (opened from `path`, named in messages) to the
 * latest schema version, one step per transaction, each step bumping
 * PRAGMA user_version in its own transaction. Sets *version_out to the
 * version reached. Returns 0, or EPH_ESTORE (also for a database written by
 * a newer eph, which is left untouched).
 */
int store__migrate(sqlite3 *db, const char *path, int *version_out, struct eph_err *err);

#endif
