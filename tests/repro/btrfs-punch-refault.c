// SPDX-License-Identifier: GPL-2.0
/*
 * On btrfs, a page read back in while a one-page FALLOC_FL_ZERO_RANGE or
 * FALLOC_FL_PUNCH_HOLE runs keeps the data from before it: after fallocate()
 * returned, pread() and a mapped load still see the old data.
 *
 * btrfs_punch_hole_lock_range() drops the range from the page cache, locks
 * the extent range, and retries if a folio came back in between - a read
 * fault that locked the extent range first and read the old extent.  Since
 * the large-folio preparation ("btrfs: prepare btrfs_punch_hole_lock_range()
 * for large data folios", in Debian's 6.12 and mainline), that check is
 * check_range_has_page(), which skips every folio that "extends beyond the
 * end": folio->index + folio_nr_pages(folio) > end_index.  For a small
 * folio at end_index that is 1 > 0, so the last page of the range - the
 * only page of a one-page range - is never seen, the loop never retries,
 * and the extent is replaced (a prealloc extent, or a hole) under a cached
 * page that still holds the old data.  6.1 checks with
 * filemap_range_has_page(), which sees it.  Found by vmcoh-race's
 * write-vs-refault on btrfs on 6.12 (tools/fsmatrix, issue 15).
 *
 * Two threads load the page through a MAP_SHARED mapping without pause, so
 * that each fallocate() finds a fault ready to read the page back in; the
 * main thread writes the page (a new nonzero byte each time), punches or
 * zeroes it, and reads it back with pread() and through the mapping.
 *
 * Usage: btrfs-punch-refault DIR [zero-range|punch] [SECONDS]   (DIR on
 * btrfs; default zero-range, 10 s).  Exit 1 if a read after fallocate()
 * returned saw the data from before it, 0 if none did, 2 on a setup error.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define PAGE	4096UL
#define READERS	2

static volatile const unsigned char *map;
static int fd;
static atomic_bool stop;

/* Reader 0 loads through the mapping; the others ask for readahead. */
static void *reader(void *arg)
{
	unsigned long sum = 0;

	while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
		if (arg)
			readahead(fd, 0, PAGE);
		else
			sum += map[0];
	}
	return (void *)sum;
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	const char *dir = argc > 1 ? argv[1] : ".";
	const char *how = argc > 2 ? argv[2] : "zero-range";
	double seconds = argc > 3 ? atof(argv[3]) : 10;
	int mode = FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE;
	pthread_t readers[READERS];
	unsigned char data[PAGE], back[PAGE];
	unsigned long i, stale = 0;
	char path[4096];
	double end;
	long r;

	if (!strcmp(how, "punch")) {
		mode = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE;
	} else if (strcmp(how, "zero-range")) {
		fprintf(stderr, "usage: %s DIR [zero-range|punch] [SECONDS]\n", argv[0]);
		return 2;
	}
	snprintf(path, sizeof(path), "%s/btrfs-punch-refault.%d", dir, getpid());
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (fd < 0) {
		perror(path);
		return 2;
	}
	unlink(path);
	memset(data, 0xff, PAGE);
	if (pwrite(fd, data, PAGE, 0) != (ssize_t)PAGE || fsync(fd)) {
		perror("pwrite");
		return 2;
	}
	if (fallocate(fd, mode, 0, PAGE)) {
		fprintf(stderr, "fallocate %s: %s\n", how, strerror(errno));
		return 2;
	}
	map = mmap(NULL, PAGE, PROT_READ, MAP_SHARED, fd, 0);
	if (map == MAP_FAILED) {
		perror("mmap");
		return 2;
	}
	for (r = 0; r < READERS; r++)
		pthread_create(&readers[r], NULL, reader, (void *)r);

	end = now() + seconds;
	for (i = 0; now() < end; i++) {
		unsigned char gen = (unsigned char)(i % 255 + 1);

		memset(data, gen, PAGE);
		if (pwrite(fd, data, PAGE, 0) != (ssize_t)PAGE) {
			perror("pwrite");
			return 2;
		}
		if (fallocate(fd, mode, 0, PAGE)) {
			perror("fallocate");
			return 2;
		}
		if (pread(fd, back, PAGE, 0) != (ssize_t)PAGE) {
			perror("pread");
			return 2;
		}
		if (back[0] == gen || map[0] == gen) {
			if (!stale)
				printf("round %lu: after %s returned, %s still %s (0x%02x)\n",
				       i, how, back[0] == gen ? "pread()" : "a load",
				       "shows the data from before it", gen);
			stale++;
		}
	}
	atomic_store(&stop, 1);
	for (r = 0; r < READERS; r++)
		pthread_join(readers[r], NULL);
	printf("%s: %lu of %lu rounds saw the data from before fallocate()\n", how, stale, i);
	return stale ? 1 : 0;
}
