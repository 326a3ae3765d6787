# Run by ctest (see CMakeLists.txt) with cmake -P:
#   1. cmake --install LQ_BUILD_DIR --prefix LQ_WORK_DIR/prefix
#   2. configure examples/cpp-consumer in a fresh LQ_WORK_DIR/build with
#      -Dlq_DIR=<prefix>/LQ_PACKAGE_DIR, with the generator and compiler of
#      the lq build, and build it
#   3. run the consumer twice with a compile cache under LQ_WORK_DIR: the
#      first run compiles its kernel, the second must load it from the disk
#      cache.
# Everything is written under LQ_WORK_DIR, inside the build directory.
cmake_minimum_required(VERSION 3.20)

foreach(var LQ_BUILD_DIR LQ_SOURCE_DIR LQ_WORK_DIR LQ_PACKAGE_DIR
            LQ_GENERATOR LQ_CXX_COMPILER)
  if(NOT DEFINED ${var} OR "${${var}}" STREQUAL "")
    message(FATAL_ERROR "ConsumerTest.cmake: ${var} is not set")
  endif()
endforeach()

foreach(file IN LISTS LQ_REQUIRED_FILES)
  if(NOT EXISTS "${file}")
    message(FATAL_ERROR
      "${file} does not exist: build the project before running this test")
  endif()
endforeach()

# Step runs a command; any failure ends the test with its output.
function(lq_step what)
  execute_process(COMMAND ${ARGN}
    RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "${what} failed (${rc}):\n${out}\n${err}")
  endif()
  set(LQ_STEP_OUTPUT "${out}" PARENT_SCOPE)
endfunction()

set(prefix ${LQ_WORK_DIR}/prefix)
set(build ${LQ_WORK_DIR}/build)
set(cache ${LQ_WORK_DIR}/cache)
file(REMOVE_RECURSE ${prefix} ${build} ${cache})
file(MAKE_DIRECTORY ${LQ_WORK_DIR})

# DESTDIR from the environment would move the installation elsewhere.
unset(ENV{DESTDIR})
# cmake --install rewrites the build's install_manifest.txt: keep the one of
# a real installation, and check from ours that every file went under the
# prefix.
set(manifest ${LQ_BUILD_DIR}/install_manifest.txt)
set(saved_manifest ${LQ_WORK_DIR}/install_manifest.saved)
file(REMOVE ${saved_manifest})
if(EXISTS ${manifest})
  file(RENAME ${manifest} ${saved_manifest})
endif()
execute_process(
  COMMAND ${CMAKE_COMMAND} --install ${LQ_BUILD_DIR} --prefix ${prefix}
  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
set(written)
if(EXISTS ${manifest})
  file(STRINGS ${manifest} written)
  file(REMOVE ${manifest})
endif()
if(EXISTS ${saved_manifest})
  file(RENAME ${saved_manifest} ${manifest})
endif()
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "installing ${LQ_BUILD_DIR} failed (${rc}):\n${out}\n${err}")
endif()
list(LENGTH written count)
if(count EQUAL 0)
  message(FATAL_ERROR "cmake --install wrote no install_manifest.txt")
endif()
foreach(file IN LISTS written)
  string(FIND "${file}" "${prefix}/" at)
  if(NOT at EQUAL 0)
    message(FATAL_ERROR "the installation wrote ${file}, outside ${prefix}")
  endif()
endforeach()
message(STATUS "installed ${count} files into ${prefix}")
foreach(file include/lq/Runtime/Runtime.h include/lq/Spec/Spec.h
             include/lq/Numerics/Numerics.h include/lq/Dialect/LqOps.h.inc
             ${LQ_PACKAGE_DIR}/lqConfig.cmake
             ${LQ_PACKAGE_DIR}/lqConfigVersion.cmake
             ${LQ_PACKAGE_DIR}/lqTargets.cmake)
  if(NOT EXISTS ${prefix}/${file})
    message(FATAL_ERROR "the installation lacks ${file}")
  endif()
endforeach()

set(configure_args -G "${LQ_GENERATOR}" -S ${LQ_SOURCE_DIR}/examples/cpp-consumer
  -B ${build} -Dlq_DIR=${prefix}/${LQ_PACKAGE_DIR}
  -DCMAKE_CXX_COMPILER=${LQ_CXX_COMPILER})
if(LQ_MAKE_PROGRAM)
  list(APPEND configure_args -DCMAKE_MAKE_PROGRAM=${LQ_MAKE_PROGRAM})
endif()
if(LQ_BUILD_TYPE)
  list(APPEND configure_args -DCMAKE_BUILD_TYPE=${LQ_BUILD_TYPE})
endif()
lq_step("configuring the consumer" ${CMAKE_COMMAND} ${configure_args})
lq_step("building the consumer" ${CMAKE_COMMAND} --build ${build})

set(consumer ${build}/lq-cpp-consumer)
if(NOT EXISTS ${consumer})
  message(FATAL_ERROR "the consumer build made no ${consumer}")
endif()

set(ENV{LQ_CACHE_DIR} ${cache})
unset(ENV{LQ_CACHE_DISABLE})
foreach(run first second)
  lq_step("running the consumer (${run} run)" ${consumer})
  string(STRIP "${LQ_STEP_OUTPUT}" line)
  message(STATUS "${run} run: ${line}")
  if(run STREQUAL "first")
    set(expected "kernel=compiled")
  else()
    set(expected "kernel=disk-cache")
  endif()
  if(NOT line MATCHES "checksum=" OR NOT line MATCHES "${expected}")
    message(FATAL_ERROR "the ${run} run should report ${expected}")
  endif()
endforeach()
