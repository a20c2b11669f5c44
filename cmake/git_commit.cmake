# Writes OUT with the source tree's commit (and "-dirty" when it has local
# changes), only when it changed, so every build records the commit it was built
# from (the manifest of a run names it) without rebuilding everything.
execute_process(COMMAND git -C ${SRC} rev-parse --short=12 HEAD OUTPUT_VARIABLE c
                OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
if(NOT c)
  set(c "unknown")
else()
  execute_process(COMMAND git -C ${SRC} status --porcelain --untracked-files=no OUTPUT_VARIABLE d ERROR_QUIET)
  if(d)
    set(c "${c}-dirty")
  endif()
endif()
set(text "#define DCAL_GIT_COMMIT \"${c}\"\n")
if(EXISTS ${OUT})
  file(READ ${OUT} old)
endif()
if(NOT "${old}" STREQUAL "${text}")
  file(WRITE ${OUT} "${text}")
endif()
