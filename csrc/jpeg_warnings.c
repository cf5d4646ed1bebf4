/* Every warning libjpeg raises while decoding a JPEG to the end.
 *
 * TurboJPEG reports only the first warning of a decode; when that one is harmless (stray bytes
 * between segments, an unknown JFIF revision), a later one saying data is missing would go
 * unseen. This decodes the image again through libjpeg's own API (the copy inside the static
 * libturbojpeg), with an error manager that keeps every warning's text. Called by
 * src/decode/cpu.rs only after such a first warning, so a clean image never pays for it. */

#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jpeglib.h"

struct keeping_errors {
  struct jpeg_error_mgr pub;
  jmp_buf fail;
  char *texts;  /* `max` slots of JMSG_LENGTH_MAX bytes */
  int max;
  int count;
};

static void fail(j_common_ptr cinfo) {
  longjmp(((struct keeping_errors *)cinfo->err)->fail, 1);
}

static void keep_warning(j_common_ptr cinfo, int level) {
  struct keeping_errors *err = (struct keeping_errors *)cinfo->err;
  if (level >= 0) return; /* trace messages */
  if (err->count < err->max)
    cinfo->err->format_message(cinfo, err->texts + (size_t)err->count * JMSG_LENGTH_MAX);
  err->count++;
  cinfo->err->num_warnings++;
}

/* Decode `data` (`len` bytes) to its last row, pixels discarded, and write the texts of its
 * first `max` warnings into `texts` (`max` slots of `slot` bytes). Returns how many warnings
 * there were, or -1 when decoding stopped on an error or `slot` is too small. */
int slipstream_jpeg_warnings(const unsigned char *data, unsigned long len, char *texts, int max,
                             int slot) {
  struct jpeg_decompress_struct cinfo;
  struct keeping_errors err;
  JSAMPARRAY row = NULL;
  volatile int count = -1;
  if (slot < JMSG_LENGTH_MAX) return -1;
  memset(&cinfo, 0, sizeof(cinfo));
  cinfo.err = jpeg_std_error(&err.pub);
  err.pub.error_exit = fail;
  err.pub.emit_message = keep_warning;
  err.texts = calloc((size_t)(max > 0 ? max : 1), JMSG_LENGTH_MAX);
  err.max = max;
  err.count = 0;
  if (err.texts == NULL) return -1;
  if (setjmp(err.fail) == 0) {
    jpeg_create_decompress(&cinfo);
    jpeg_mem_src(&cinfo, data, len);
    jpeg_read_header(&cinfo, TRUE);
    jpeg_start_decompress(&cinfo);
    row = (*cinfo.mem->alloc_sarray)((j_common_ptr)&cinfo, JPOOL_IMAGE,
                                     cinfo.output_width * cinfo.output_components, 1);
    while (cinfo.output_scanline < cinfo.output_height) jpeg_read_scanlines(&cinfo, row, 1);
    jpeg_finish_decompress(&cinfo);
    count = err.count;
  }
  jpeg_destroy_decompress(&cinfo);
  for (int i = 0; i < max && i < err.count; i++)
    memcpy(texts + (size_t)i * slot, err.texts + (size_t)i * JMSG_LENGTH_MAX, JMSG_LENGTH_MAX);
  free(err.texts);
  return count;
}
