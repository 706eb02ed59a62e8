/*
 * module-loader.h: private to the auth core.  Loading is declared in
 * gh-auth.h (gh_auth_module_load); this header holds what core.c and the
 * loader share.
 */
#pragma once

#include "gh-auth-module.h"

/* TRUE when `name` is a valid module name: [a-z0-9_-]+, at most 64 bytes. */
gboolean gh_auth_module_name_valid(const char *name);
