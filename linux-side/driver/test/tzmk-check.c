// SPDX-License-Identifier: GPL-2.0
/*
 * tzmk-check: exercises /dev/tzmk/echo through tzmk.ko on the real system (QEMU, seL4 beside
 * Linux) and prints `tzmk-check: PASS` or `tzmk-check: FAIL: <reason>` (exit 0 or 1).
 *
 * Round trips with checksums, the exclusive open, -EMSGSIZE both ways, -EAGAIN on an empty port
 * with O_NONBLOCK, -ENOTTY, PORT_INFO, STATUS, CALL (echo totals), poll, and mmap of the rx ring
 * (then a bad offset: -EINVAL, PROT_EXEC: -EPERM). Every number of the ABI is tzmk_abi.h's.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "tzmk_abi.h"

#define PORT "/dev/tzmk/echo"
#define SYSFS "/sys/class/tzmk/tzmk!echo/"
#define ROUND_TRIPS 1000

static void fail(const char *format, ...)
{
	va_list args;

	printf("tzmk-check: FAIL: ");
	va_start(args, format);
	vprintf(format, args);
	va_end(args);
	printf("\n");
	fflush(stdout);
	exit(1);
}

/* FNV-1a: the checksum a message carries in its first 4 bytes, over the rest. */
static uint32_t checksum(const unsigned char *data, size_t length)
{
	uint32_t hash = 2166136261u;
	size_t i;

	for (i = 0; i < length; i++)
		hash = (hash ^ data[i]) * 16777619u;
	return hash;
}

/* Message i: its length, and bytes from a simple generator, checksum first. */
static size_t make_message(unsigned char *buf, unsigned int i, size_t max)
{
	size_t length = 4 + (i * 37u) % (max - 3);
	uint32_t state = i * 2654435761u + 1;
	uint32_t sum;
	size_t j;

	for (j = 4; j < length; j++) {
		state = state * 1103515245u + 12345u;
		buf[j] = (unsigned char)(state >> 16);
	}
	sum = checksum(buf + 4, length - 4);
	memcpy(buf, &sum, 4);
	return length;
}

/* The first line of a sysfs file, without its newline. */
static void read_sysfs(const char *path, char *out, size_t size)
{
	FILE *file = fopen(path, "r");

	if (!file || !fgets(out, (int)size, file))
		fail("reading %s: %s", path, strerror(errno));
	fclose(file);
	out[strcspn(out, "\n")] = '\0';
}

/* The sum of the counts in a `doorbells` line ("cpu0 N cpu1 N ..."). */
static unsigned long doorbell_total(const char *line)
{
	unsigned long total = 0, count;
	unsigned int cpu;
	int used;

	while (sscanf(line, " cpu%u %lu%n", &cpu, &count, &used) == 2) {
		total += count;
		line += used;
	}
	return total;
}

static void expect_errno(long result, int expected, const char *what)
{
	if (result >= 0)
		fail("%s succeeded (%ld), expected %s", what, result, strerror(expected));
	if (errno != expected)
		fail("%s: %s, expected %s", what, strerror(errno), strerror(expected));
}

int main(void)
{
	static unsigned char message[1 << 20], answer[1 << 20];
	struct tzmk_port_info info;
	struct tzmk_port_status status;
	struct tzmk_sink_totals totals;
	struct tzmk_call call;
	struct pollfd pfd;
	unsigned long long bytes = 0;
	size_t max, length;
	unsigned int i;
	ssize_t got;
	void *ring;
	int fd, flags;

	setvbuf(stdout, NULL, _IOLBF, 0);
	fd = open(PORT, O_RDWR);
	if (fd < 0)
		fail("open %s: %s", PORT, strerror(errno));
	expect_errno(open(PORT, O_RDWR), EBUSY, "a second open of " PORT);

	if (ioctl(fd, TZMK_IOC_PORT_INFO, &info))
		fail("PORT_INFO: %s", strerror(errno));
	if (strncmp(info.name, "echo", sizeof(info.name)) || info.service != TZMK_SERVICE_ECHO ||
	    info.state != TZMK_PORT_OPEN || info.rx_max_message != TZMK_RING_MAX_MESSAGE(info.rx_capacity) ||
	    info.tx_mmap_offset != TZMK_TX_MMAP_OFFSET || info.rx_mmap_size < TZMK_RING_HEADER_SIZE + info.rx_capacity)
		fail("PORT_INFO: an unexpected answer (name %.24s service %u state %u rx %u max %u)", info.name,
		     info.service, info.state, info.rx_capacity, info.rx_max_message);
	printf("tzmk-check: port %.24s id %u session %u rx %u tx %u max message %u/%u\n", info.name, info.id,
	       info.session, info.rx_capacity, info.tx_capacity, info.rx_max_message, info.tx_max_message);
	max = info.rx_max_message < info.tx_max_message ? info.rx_max_message : info.tx_max_message;
	if (max < 16 || max > sizeof(message))
		fail("max message %zu out of the test's range", max);

	/* Nothing written yet: an empty port. */
	flags = fcntl(fd, F_GETFL);
	if (fcntl(fd, F_SETFL, flags | O_NONBLOCK))
		fail("fcntl O_NONBLOCK: %s", strerror(errno));
	expect_errno(read(fd, answer, sizeof(answer)), EAGAIN, "a non-blocking read of an empty port");
	pfd = (struct pollfd){ .fd = fd, .events = POLLIN | POLLOUT };
	if (poll(&pfd, 1, 0) != 1 || pfd.revents != POLLOUT)
		fail("poll of an empty port: revents %#x, expected POLLOUT only", pfd.revents);
	if (fcntl(fd, F_SETFL, flags))
		fail("fcntl: %s", strerror(errno));

	for (i = 0; i < ROUND_TRIPS; i++) {
		length = make_message(message, i, max);
		got = write(fd, message, length);
		if (got != (ssize_t)length)
			fail("write %u (%zu bytes): %zd, %s", i, length, got, strerror(errno));
		got = read(fd, answer, sizeof(answer));
		if (got != (ssize_t)length)
			fail("read %u: %zd bytes (%s), expected %zu", i, got, got < 0 ? strerror(errno) : "", length);
		if (checksum(answer + 4, length - 4) != *(uint32_t *)answer || memcmp(answer, message, length))
			fail("echo %u (%zu bytes) came back different", i, length);
		bytes += length;
	}
	printf("tzmk-check: %u round trips, %llu bytes, checksums match\n", ROUND_TRIPS, bytes);

	expect_errno(write(fd, message, info.rx_max_message + 1), EMSGSIZE, "a write of max message + 1");
	length = make_message(message, 7, max);
	if (write(fd, message, length) != (ssize_t)length)
		fail("write: %s", strerror(errno));
	pfd = (struct pollfd){ .fd = fd, .events = POLLIN };
	if (poll(&pfd, 1, 5000) != 1 || !(pfd.revents & POLLIN))
		fail("poll for the echo: revents %#x", pfd.revents);
	expect_errno(read(fd, answer, length - 1), EMSGSIZE, "a read into a buffer one byte short");
	if (read(fd, answer, sizeof(answer)) != (ssize_t)length || memcmp(answer, message, length))
		fail("the message a short read refused did not stay whole");
	printf("tzmk-check: EMSGSIZE both ways, the refused message stayed\n");

	expect_errno(ioctl(fd, _IO(TZMK_IOCTL_MAGIC, 99)), ENOTTY, "an unknown ioctl");
	if (ioctl(fd, TZMK_IOC_STATUS, &status))
		fail("STATUS: %s", strerror(errno));
	if (status.id != info.id || status.session != info.session || status.state != TZMK_PORT_OPEN ||
	    status.messages_in != ROUND_TRIPS + 1)
		fail("STATUS: id %u session %u state %u messages in %llu", status.id, status.session, status.state,
		     (unsigned long long)status.messages_in);
	memset(&call, 0, sizeof(call));
	call.command = TZMK_COMMAND_ECHO_TOTALS;
	if (ioctl(fd, TZMK_IOC_CALL, &call))
		fail("CALL echo totals: %s", strerror(errno));
	if (call.output_length != sizeof(totals))
		fail("CALL echo totals: %u bytes of output", call.output_length);
	memcpy(&totals, call.data, sizeof(totals));
	if (totals.messages != ROUND_TRIPS + 1 || totals.bytes != bytes + length)
		fail("CALL echo totals: %llu messages %llu bytes, expected %u and %llu",
		     (unsigned long long)totals.messages, (unsigned long long)totals.bytes, ROUND_TRIPS + 1,
		     bytes + length);
	call.reserved = 1;
	expect_errno(ioctl(fd, TZMK_IOC_CALL, &call), EINVAL, "CALL with reserved != 0");
	call.reserved = 0;
	call.input_length = TZMK_MAX_CONTROL_PAYLOAD + 1;
	expect_errno(ioctl(fd, TZMK_IOC_CALL, &call), EINVAL, "CALL with input_length > max");
	if (ioctl(fd, TZMK_IOC_KICK))
		fail("KICK: %s", strerror(errno));
	printf("tzmk-check: status: %llu messages in, %llu out; echo totals %llu messages %llu bytes\n",
	       (unsigned long long)status.messages_in, (unsigned long long)status.messages_out,
	       (unsigned long long)totals.messages, (unsigned long long)totals.bytes);

	ring = mmap(NULL, info.rx_mmap_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, info.rx_mmap_offset);
	if (ring == MAP_FAILED)
		fail("mmap of the rx ring: %s", strerror(errno));
	{
		volatile uint32_t *producer = (volatile uint32_t *)((char *)ring + TZMK_RING_PRODUCER_OFFSET);
		volatile uint32_t *consumer = (volatile uint32_t *)((char *)ring + TZMK_RING_CONSUMER_OFFSET);

		if (*producer % TZMK_RING_RECORD_HEADER || *producer - *consumer > info.rx_capacity || *producer == 0)
			fail("the mapped rx ring: producer %u consumer %u", *producer, *consumer);
		printf("tzmk-check: mmap rx ring: producer %u consumer %u\n", *producer, *consumer);
	}
	/* Read and write still work after the mapping (the driver re-attaches at the indices found). */
	length = make_message(message, 11, max);
	if (write(fd, message, length) != (ssize_t)length || read(fd, answer, sizeof(answer)) != (ssize_t)length ||
	    memcmp(answer, message, length))
		fail("a round trip after mmap: %s", strerror(errno));
	munmap(ring, info.rx_mmap_size);
	expect_errno((long)(intptr_t)mmap(NULL, 4096, PROT_READ, MAP_SHARED, fd, 4096) == -1 ? -1 : 0, EINVAL,
		     "mmap at an offset that is neither ring's");
	expect_errno((long)(intptr_t)mmap(NULL, info.rx_mmap_size + 4096, PROT_READ, MAP_SHARED, fd, 0) == -1 ? -1 : 0,
		     EINVAL, "mmap larger than the rx ring");
	expect_errno((long)(intptr_t)mmap(NULL, info.rx_mmap_size, PROT_READ | PROT_EXEC, MAP_SHARED, fd, 0) == -1 ? -1 : 0,
		     EPERM, "mmap with PROT_EXEC");
	printf("tzmk-check: mmap: rx ring mapped, bad offset EINVAL, too large EINVAL, PROT_EXEC EPERM\n");

	{
		char line[512];

		read_sysfs(SYSFS "state", line, sizeof(line));
		if (strcmp(line, "open"))
			fail("sysfs state of an open port: %s", line);
		read_sysfs(SYSFS "doorbells", line, sizeof(line));
		printf("tzmk-check: sysfs doorbells: %s\n", line);
		if (doorbell_total(line) == 0)
			fail("sysfs doorbells: no doorbell woke the port in %u round trips", ROUND_TRIPS);
		read_sysfs(SYSFS "device/status", line, sizeof(line));
		printf("tzmk-check: sysfs status: %s\n", line);
		if (strncmp(line, "version ", 8))
			fail("sysfs status: %s", line);
	}
	if (close(fd))
		fail("close: %s", strerror(errno));
	{
		/*
		 * release never waits for the secure side: it queues the close for the control worker
		 * (README.md), so the session is closed shortly after, not at once. 2 s at most.
		 */
		char line[64];
		int tries;

		for (tries = 0; tries < 200; tries++) {
			read_sysfs(SYSFS "state", line, sizeof(line));
			if (!strcmp(line, "closed"))
				break;
			usleep(10000);
		}
		if (strcmp(line, "closed"))
			fail("sysfs state 2 s after close: %s, expected closed", line);
	}
	/* The release closed the session: the port opens again. */
	fd = open(PORT, O_RDWR);
	if (fd < 0)
		fail("open after close: %s", strerror(errno));
	if (ioctl(fd, TZMK_IOC_PORT_INFO, &info) || info.state != TZMK_PORT_OPEN)
		fail("PORT_INFO after reopen: %s", strerror(errno));
	close(fd);
	printf("tzmk-check: PASS\n");
	return 0;
}
