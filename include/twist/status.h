/* twist: status codes and error messages.
 *
 * Every library function that can fail returns a tw_status. On failure the library also records a
 * readable message (naming the argument, shape, device or file at fault) that the caller fetches
 * with tw_last_error(). The message is per thread, so worker threads driving different devices do
 * not overwrite each other's errors. The library never calls exit() or abort(). */
#ifndef TWIST_STATUS_H
#define TWIST_STATUS_H

#ifdef __cplusplus
extern "C" {
#endif

typedef enum tw_status {
    TW_OK = 0,
    TW_ERR_INVALID_ARGUMENT, /* a shape, offset, spec or flag that cannot be right */
    TW_ERR_OUT_OF_MEMORY,    /* host or device allocation failed */
    TW_ERR_NOT_FOUND,        /* no such device, file or entry */
    TW_ERR_UNSUPPORTED,      /* valid request this backend or device cannot do (dtype, feature) */
    TW_ERR_BACKEND,          /* the driver or runtime returned an error */
    TW_ERR_IO,               /* reading or writing a file failed */
    TW_ERR_FORMAT            /* a file is malformed, truncated or fails its checksum */
} tw_status;

/* Short constant name of a status ("invalid argument", ...). */
const char *tw_status_name(tw_status status);

/* Message of the last failure on this thread; "" if none. Valid until the next failing call. */
const char *tw_last_error(void);

/* Clears this thread's message. */
void tw_clear_error(void);

#ifdef __cplusplus
}
#endif

#endif
