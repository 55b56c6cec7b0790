// SPDX-License-Identifier: GPL-2.0
/*
 * After write(2) to a FUSE file returned, a read(2) or a load through a
 * MAP_SHARED mapping of it still sees the data from before the write.
 *
 * One thread writes one 4 KiB page again and again, each time filled with
 * the next generation number, and publishes the generation once pwrite()
 * has returned.  Two threads read the page with pread() and through a
 * mapping, and check that what they see is no older than the generation
 * published before they looked.  On a page-cache file system it never is.
 *
 * On FUSE with FUSE_CAP_AUTO_INVAL_DATA (libfuse's default) and a server
 * that runs several requests at once, it is, within seconds: found by
 * vmcoh-race on vmcoh-fusepass (tools/fsmatrix, issue 15).  The likely
 * window (fs/fuse/file.c, dir.c): the write copies into the page cache and
 * marks the pages uptodate before its WRITE request reaches the server; a
 * concurrent read(2) refreshes the attributes (fuse_update_attributes()),
 * sees a new mtime and invalidates the whole page cache
 * (fuse_change_attributes_i() -> invalidate_inode_pages2()), and the next
 * read or fault reads the page back from the server before the server has
 * applied the WRITE.  That stale page then stays cached after write(2)
 * returned.  Without AUTO_INVAL_DATA (vmcoh-fusepass --no-auto-inval-data)
 * or with one server thread it goes away.
 *
 * Usage: fuse-auto-inval-stale FILE [SECONDS]
 * FILE on a FUSE mount, e.g.
 *
 *     vmcoh-fusepass --source /tmp/src /tmp/mnt &
 *     ./fuse-auto-inval-stale /tmp/mnt/f 10
 *
 * Exit 1 if a read saw older data than a write that had returned, 0 if not
 * within SECONDS (default 10), 2 on a setup error.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define PAGE	4096
#define WORDS	(PAGE / sizeof(uint64_t))

static int fd;
static volatile const uint64_t *map;
static _Atomic uint64_t done;	/* the last generation whose pwrite() returned */
static atomic_bool stop;
static atomic_int stale;

static void *writer(void *arg)
{
	static uint64_t page[WORDS];
	uint64_t gen;
	size_t i;

	(void)arg;
	for (gen = 1; !atomic_load(&stop); gen++) {
		for (i = 0; i < WORDS; i++)
			page[i] = gen;
		if (pwrite(fd, page, PAGE, 0) != PAGE) {
			perror("pwrite");
			exit(2);
		}
		atomic_store_explicit(&done, gen, memory_order_release);
	}
	return NULL;
}

static void *reader(void *arg)
{
	uint64_t page[WORDS], before, seen;
	int mapped = *(int *)arg;

	while (!atomic_load(&stop)) {
		before = atomic_load_explicit(&done, memory_order_acquire);
		if (mapped) {
			seen = map[0];
		} else {
			if (pread(fd, page, PAGE, 0) != PAGE) {
				perror("pread");
				exit(2);
			}
			seen = page[0];
		}
		if (seen < before) {
			printf("%s saw generation %llu after pwrite() of generation %llu had returned\n",
			       mapped ? "a load through MAP_SHARED" : "pread()",
			       (unsigned long long)seen, (unsigned long long)before);
			atomic_fetch_add(&stale, 1);
			atomic_store(&stop, true);
		}
	}
	return NULL;
}

int main(int argc, char **argv)
{
	static const uint64_t zero[WORDS];
	int kinds[2] = { 0, 1 };
	double seconds = argc > 2 ? atof(argv[2]) : 10;
	struct timespec t = { .tv_sec = (time_t)seconds,
			      .tv_nsec = (long)((seconds - (time_t)seconds) * 1e9) };
	pthread_t w, r[2];

	if (argc < 2 || argc > 3 || seconds <= 0) {
		fprintf(stderr, "usage: %s FILE [SECONDS]\n", argv[0]);
		return 2;
	}
	fd = open(argv[1], O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || pwrite(fd, zero, PAGE, 0) != PAGE) {
		perror(argv[1]);
		return 2;
	}
	map = mmap(NULL, PAGE, PROT_READ, MAP_SHARED, fd, 0);
	if (map == MAP_FAILED) {
		perror("mmap");
		return 2;
	}
	pthread_create(&w, NULL, writer, NULL);
	pthread_create(&r[0], NULL, reader, &kinds[0]);
	pthread_create(&r[1], NULL, reader, &kinds[1]);
	nanosleep(&t, NULL);
	atomic_store(&stop, true);
	pthread_join(w, NULL);
	pthread_join(r[0], NULL);
	pthread_join(r[1], NULL);
	unlink(argv[1]);
	if (atomic_load(&stale)) {
		printf("%s: BUG: stale data after write(2) returned\n", argv[1]);
		return 1;
	}
	printf("%s: no stale read in %g s\n", argv[1], seconds);
	return 0;
}
