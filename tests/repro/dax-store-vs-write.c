// SPDX-License-Identifier: GPL-2.0
/*
 * On a DAX file, a load through a mapping after write(2) returned sees the
 * zero page where write(2) put data, while a store fault fills the same
 * hole through another mapping.
 *
 * Per page: a reader maps the hole (a read fault maps the zero page), then
 * one thread stores the page's data through mapping A while another
 * pwrite()s the same data; once pwrite() has returned, the reader loads the
 * page through mapping B and must see the data.  The store's fault
 * allocates the block (iomap_begin, IOMAP_F_NEW) and unmaps the zero page
 * from every mapping only when it inserts its entry (dax_insert_entry());
 * the pwrite(), which takes no entry lock, finds the block already
 * allocated, so it invalidates nothing, copies and returns - while B still
 * maps the zero page.  vmcoh's unsafe=zero_unmap_after_publish is this
 * order on purpose; the device unmaps before it publishes.  Found by
 * vmcoh-race's store-vs-fault on ext4 and xfs with -o dax on 6.12
 * (tools/fsmatrix, issue 15).
 *
 * Usage: dax-store-vs-write FILE [PAGES]   (FILE on a DAX mount; PAGES
 * default 4096, each a fresh hole).  Exit 1 if a load saw zeros after the
 * write returned, 0 if none did, 2 on a setup error.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define PAGE	4096UL

static int fd;
static char *a, *b;
static unsigned long pages;
static _Atomic unsigned long go_store = ~0UL, stored = ~0UL;

static void fill(char *buf, unsigned long page)
{
	memset(buf, (int)(page % 251) + 1, PAGE);
}

/* Stores page p's data through mapping A when told to. */
static void *storer(void *arg)
{
	char data[PAGE];
	unsigned long p;

	(void)arg;
	for (p = 0; p < pages; p++) {
		while (atomic_load(&go_store) != p)
			;
		fill(data, p);
		memcpy(a + p * PAGE, data, PAGE);
		atomic_store(&stored, p);
	}
	return NULL;
}

int main(int argc, char **argv)
{
	char data[PAGE];
	unsigned long p, bad = 0;
	volatile char sink;
	pthread_t t;

	if (argc < 2 || argc > 3) {
		fprintf(stderr, "usage: %s FILE [PAGES]\n", argv[0]);
		return 2;
	}
	pages = argc > 2 ? strtoul(argv[2], NULL, 0) : 4096;
	fd = open(argv[1], O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || ftruncate(fd, pages * PAGE)) {
		perror(argv[1]);
		return 2;
	}
	a = mmap(NULL, pages * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	b = mmap(NULL, pages * PAGE, PROT_READ, MAP_SHARED, fd, 0);
	if (a == MAP_FAILED || b == MAP_FAILED) {
		perror("mmap");
		return 2;
	}
	pthread_create(&t, NULL, storer, NULL);
	for (p = 0; p < pages; p++) {
		sink = b[p * PAGE];		/* B maps the hole: the zero page */
		fill(data, p);
		atomic_store(&go_store, p);	/* the store fault and ... */
		if (pwrite(fd, data, PAGE, p * PAGE) != PAGE) {	/* ... write(2) race */
			perror("pwrite");
			return 2;
		}
		if (b[p * PAGE] == 0 && b[p * PAGE + PAGE - 1] == 0) {
			if (!bad++)
				printf("page %lu: a load through B sees zeros after pwrite() returned\n",
				       p);
		}
		while (atomic_load(&stored) != p)
			;
	}
	(void)sink;
	pthread_join(t, NULL);
	unlink(argv[1]);
	printf("%s: %lu of %lu pages read zeros after write(2) returned%s\n", argv[1], bad, pages,
	       bad ? " - BUG" : "");
	return bad ? 1 : 0;
}
