/*
 * sign-rate.c: private-key signatures per CPU-second through GnuTLS, the
 * one costly step of a TLS handshake on the server side, for the key kinds
 * bench/run's tls mode uses (RSA 2048 with PSS, ECDSA P-256), so that
 * gatehouse's handshake figures can be set beside the TLS library's own
 * limit, and OpenSSL's (`openssl speed rsa2048 ecdsap256`, nginx's library).
 *
 *   bench/sign-rate [SECONDS]     (default 3 per key kind)
 *
 * A fresh key of each kind is generated, then the same 32 bytes are signed
 * over and over for SECONDS of this process's CPU time.  One line per kind:
 * "KIND SIGNATURES-PER-CPU-SECOND".
 */
#include <gnutls/abstract.h>
#include <gnutls/gnutls.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double
cpu_seconds(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int
rate(const char *name,
     gnutls_pk_algorithm_t pk,
     unsigned bits,
     gnutls_sign_algorithm_t sign,
     double seconds)
{
	unsigned char digest[32] = {0};
	gnutls_datum_t data = {digest, sizeof digest};
	gnutls_privkey_t key;
	unsigned long n = 0;
	double start, now;
	int rc;

	if (gnutls_privkey_init(&key) < 0)
		return 1;
	rc = gnutls_privkey_generate(key, pk, bits, 0);
	if (rc < 0) {
		fprintf(stderr, "%s: key: %s\n", name, gnutls_strerror(rc));
		gnutls_privkey_deinit(key);
		return 1;
	}
	start = now = cpu_seconds();
	while (now - start < seconds) {
		gnutls_datum_t sig = {NULL, 0};
		rc = gnutls_privkey_sign_data2(key, sign, 0, &data, &sig);
		if (rc < 0) {
			fprintf(stderr, "%s: sign: %s\n", name, gnutls_strerror(rc));
			gnutls_privkey_deinit(key);
			return 1;
		}
		gnutls_free(sig.data);
		n++;
		now = cpu_seconds();
	}
	printf("%s %.1f\n", name, (double)n / (now - start));
	gnutls_privkey_deinit(key);
	return 0;
}

int
main(int argc, char **argv)
{
	double seconds = argc > 1 ? atof(argv[1]) : 3.0;
	int bad = 0;

	if (seconds <= 0) {
		fprintf(stderr, "usage: sign-rate [SECONDS]\n");
		return 64;
	}
	if (gnutls_global_init() < 0)
		return 1;
	bad |= rate("rsa2048-pss-sha256", GNUTLS_PK_RSA, 2048, GNUTLS_SIGN_RSA_PSS_RSAE_SHA256,
		    seconds);
	bad |= rate("ecdsa-p256-sha256", GNUTLS_PK_ECDSA,
		    GNUTLS_CURVE_TO_BITS(GNUTLS_ECC_CURVE_SECP256R1),
		    GNUTLS_SIGN_ECDSA_SECP256R1_SHA256, seconds);
	gnutls_global_deinit();
	return bad;
}
