/* Internal pieces of the tokenizer shared by its source files (text/). */
#ifndef MVL_TEXT_TOKENIZER_INTERNAL_H
#define MVL_TEXT_TOKENIZER_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Writes s[0..n) to out with every maximal invalid UTF-8 subpart replaced by
 * U+FFFD (the Unicode "substitution of maximal subparts", as Rust's
 * from_utf8_lossy). With final == false an incomplete but so far valid
 * sequence at the end is not consumed. out needs 3 * n bytes. Returns the
 * bytes written; *consumed gets the input bytes used. */
size_t mvl_utf8_lossy(const unsigned char *s, size_t n, bool final, char *out, size_t *consumed);

/* Length of the valid UTF-8 sequence at s[0..n), or 0 when it is invalid or
 * cut short. */
size_t mvl_utf8_valid_seq(const unsigned char *s, size_t n);

#endif
