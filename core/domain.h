/*
 * domain.h: domain names in one canonical form, so that every comparison,
 * lookup and shard hash sees one spelling of a domain.
 *
 * The canonical form is the lower-case A-label form (RFC 5890 2.3.2.1): an
 * internationalized domain written with U-labels ("müller.example") becomes
 * "xn--mller-kva.example" through IDNA2008 (RFC 5891) with the UTS #46
 * mapping, done by libidn2; an ASCII domain is only folded to lower case.
 * Used by the configuration (`domains`, `postmaster`) and by the recipient
 * policy at RCPT, which is why it lives in core/ and not in smtp/.
 */
#ifndef PA_DOMAIN_H
#define PA_DOMAIN_H

#include <stdbool.h>
#include <stddef.h>

#define PA_DOMAIN_MAX 253 /* RFC 1035 2.3.4: 255 octets on the wire, 253 as text */

/*
 * Also run the A-labels of an ASCII domain ("xn--...") through libidn2, so
 * that one that does not decode is refused.  For the configuration; the
 * RCPT path leaves it off, as an ASCII domain then needs no libidn2 call.
 */
#define PA_DOMAIN_CHECK_ALABELS 0x1

/*
 * Writes the canonical form of the domain in[0..len) (no trailing dot, no
 * address literal) to out, NUL-terminated, and returns its length; PA_ERROR
 * when it is not a host name: a label that is empty, longer than 63 octets,
 * starts or ends with a hyphen or holds an ASCII octet other than a letter,
 * digit or hyphen, or a U-label that IDNA2008 refuses.
 *
 * Cost: an ASCII domain is checked and folded in place, with no allocation
 * (the common case at RCPT).  A domain with octets >= 0x80 calls libidn2,
 * which allocates internally (a few small blocks, freed before returning);
 * such domains are rare, so the rule of no malloc per message on a worker
 * holds for the steady state.
 */
int pa_domain_canonical(const char *in, size_t len, char out[PA_DOMAIN_MAX + 1], unsigned flags);

/* Whether in[0..len) holds an octet >= 0x80 (a U-label). */
bool pa_domain_is_utf8(const char *in, size_t len);

#endif
