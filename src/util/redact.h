/*
 * util/redact.h - removes credentials from text before it is logged or shown.
 *
 * A repository URL may carry a password or token
 * ("https://user:ghp_x@git.example.com/shop.git"), and git repeats it in its
 * messages. Anything that logs or returns such text passes it through here.
 */
#ifndef EPH_UTIL_REDACT_H
#define EPH_UTIL_REDACT_H

/*
 * Returns a copy of `text` (free()) in which the user-info part of every URL
 * ("scheme://USERINFO@host") is replaced by "***". NULL gives NULL.
 */
char *redact_credentials(const char *text);

#endif
