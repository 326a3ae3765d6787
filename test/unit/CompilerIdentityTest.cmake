# The compiler identity (cmake/lqCompilerIdentity.cmake) changes with any
# hashed source's content, name or presence and with nothing else: run on a
# scratch tree shaped like lq's.
#
#   cmake -DLQ_SOURCE_DIR=<lq> -DWORK_DIR=<scratch> -P CompilerIdentityTest.cmake

include(${LQ_SOURCE_DIR}/cmake/lqCompilerIdentity.cmake)

file(REMOVE_RECURSE "${WORK_DIR}")
file(WRITE "${WORK_DIR}/lib/Conversion/Lower.cpp" "int lower() { return 1; }\n")
file(WRITE "${WORK_DIR}/include/lq/Conversion/Lower.h" "int lower();\n")
file(WRITE "${WORK_DIR}/dialects/LqOps.td" "def Op;\n")
file(WRITE "${WORK_DIR}/test/unit/Test.cpp" "int test();\n")
file(WRITE "${WORK_DIR}/docs/page.md" "text\n")

function(expect_identity what relation reference)
  lq_compiler_identity("${WORK_DIR}" now)
  if(NOT now MATCHES "^[0-9a-f]+$")
    message(FATAL_ERROR "${what}: '${now}' is not a hex digest")
  endif()
  string(LENGTH "${now}" length)
  if(NOT length EQUAL 64)
    message(FATAL_ERROR "${what}: '${now}' is not 64 hex digits")
  endif()
  if(relation STREQUAL "same" AND NOT now STREQUAL reference)
    message(FATAL_ERROR "${what} changed the identity")
  elseif(relation STREQUAL "different" AND now STREQUAL reference)
    message(FATAL_ERROR "${what} did not change the identity")
  endif()
  set(identity "${now}" PARENT_SCOPE)
endfunction()

lq_compiler_identity("${WORK_DIR}" base)
expect_identity("hashing again" same "${base}")

file(WRITE "${WORK_DIR}/lib/Conversion/Lower.cpp" "int lower() { return 2; }\n")
expect_identity("a library source edit" different "${base}")
file(WRITE "${WORK_DIR}/lib/Conversion/Lower.cpp" "int lower() { return 1; }\n")
expect_identity("undoing the edit" same "${base}")

file(WRITE "${WORK_DIR}/include/lq/Conversion/Lower.h" "int lower(int);\n")
expect_identity("a header edit" different "${base}")
file(WRITE "${WORK_DIR}/include/lq/Conversion/Lower.h" "int lower();\n")

file(WRITE "${WORK_DIR}/dialects/LqOps.td" "def Op2;\n")
expect_identity("an ODS edit" different "${base}")
file(WRITE "${WORK_DIR}/dialects/LqOps.td" "def Op;\n")

file(WRITE "${WORK_DIR}/lib/Conversion/New.cpp" "\n")
expect_identity("a new library source" different "${base}")
file(REMOVE "${WORK_DIR}/lib/Conversion/New.cpp")

file(RENAME "${WORK_DIR}/lib/Conversion/Lower.cpp"
  "${WORK_DIR}/lib/Conversion/Lowering.cpp")
expect_identity("a renamed source" different "${base}")
file(RENAME "${WORK_DIR}/lib/Conversion/Lowering.cpp"
  "${WORK_DIR}/lib/Conversion/Lower.cpp")

file(WRITE "${WORK_DIR}/test/unit/Test.cpp" "int test(int);\n")
file(WRITE "${WORK_DIR}/docs/page.md" "other text\n")
expect_identity("tests and docs" same "${base}")

# The generated header holds the identity and is rewritten only on change.
set(header "${WORK_DIR}/out/CompilerIdentity.inc")
execute_process(COMMAND "${CMAKE_COMMAND}" -DLQ_SOURCE_DIR=${WORK_DIR}
  -DLQ_IDENTITY_OUTPUT=${header}
  -P "${LQ_SOURCE_DIR}/cmake/lqCompilerIdentity.cmake"
  OUTPUT_VARIABLE printed OUTPUT_STRIP_TRAILING_WHITESPACE
  RESULT_VARIABLE rc)
file(READ "${header}" text)
if(NOT rc EQUAL 0 OR NOT printed STREQUAL base OR
   NOT text MATCHES "#define LQ_COMPILER_IDENTITY \"${base}\"")
  message(FATAL_ERROR "generated header: rc ${rc}, printed '${printed}', '${text}'")
endif()
file(REMOVE_RECURSE "${WORK_DIR}")
message(STATUS "compiler identity: every check passed")
