/*
 * frag: fragment physical memory the way a long-running workload does, then hold it.
 *
 * Usage: frag MIB KEEP_NUM KEEP_DEN READY_FILE [TOUCH]
 *
 * Maps MIB MiB of anonymous memory and backs every page with a real page in address
 * order: by default up front (MAP_POPULATE, pages stay zero-filled: under User-Mode
 * Linux each first write to a page is a host fault that costs ~160 us, 32 s for
 * 768 MiB, and the page state is the same without it); with TOUCH=1 by writing 256
 * pseudo-random bytes into each page instead, so that a page swapped to zram is
 * compressed into a zsmalloc object rather than kept as a "same-filled" entry.  Then
 * in every 2 MiB of the mapping it gives back
 * all pages but KEEP_NUM of every KEEP_DEN (MADV_DONTNEED), e.g. 1 of every 4: the
 * kept pages pin down free space everywhere, leaving the buddy allocator many small
 * free blocks and few large ones, which is what compaction is for.  It then writes READY_FILE
 * and sleeps until killed, so the memory stays as it is while snapshots are taken.
 *
 * Built inside the oracle run with the machine's gcc; it only uses libc.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define CHUNK (2UL << 20)

int main(int argc, char **argv)
{
	if (argc != 5 && argc != 6) {
		fprintf(stderr, "usage: %s MIB KEEP_NUM KEEP_DEN READY_FILE [TOUCH]\n", argv[0]);
		return 2;
	}
	unsigned long mib = strtoul(argv[1], NULL, 10);
	unsigned long keep = strtoul(argv[2], NULL, 10);
	unsigned long den = strtoul(argv[3], NULL, 10);
	int touch = argc == 6 && strcmp(argv[5], "1") == 0;
	long psz = sysconf(_SC_PAGESIZE);
	if (mib == 0 || den == 0 || keep > den) {
		fprintf(stderr, "frag: bad arguments\n");
		return 2;
	}
	size_t len = mib << 20;
	len -= len % CHUNK;
	unsigned char *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
				MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | (touch ? 0 : MAP_POPULATE),
				-1, 0);
	if (p == MAP_FAILED) {
		perror("frag: mmap");
		return 1;
	}
	unsigned long npages = len / psz;
	unsigned long long x = 88172645463325252ULL;
	for (unsigned long i = 0; touch && i < npages; i++) {
		unsigned long long *w = (unsigned long long *)(p + i * psz);
		for (int j = 0; j < 32; j++) {
			x ^= x << 13; x ^= x >> 7; x ^= x << 17;  /* xorshift64 */
			w[j] = x;
		}
	}

	unsigned long freed = 0, kept = 0;
	for (unsigned long i = 0; i < npages; i += den) {
		/* Keep the first KEEP_NUM pages of each group of KEEP_DEN, free the rest. */
		unsigned long n = den - keep;
		if (i + den > npages)
			n = npages > i + keep ? npages - i - keep : 0;
		if (n && madvise(p + (i + keep) * psz, n * psz, MADV_DONTNEED) != 0) {
			perror("frag: madvise");
			return 1;
		}
		freed += n;
		kept += keep;
	}
	FILE *f = fopen(argv[4], "w");
	if (!f) {
		perror("frag: ready file");
		return 1;
	}
	fprintf(f, "pages %lu kept %lu freed %lu\n", npages, kept, freed);
	fclose(f);
	for (;;)
		pause();
	return 0;
}
