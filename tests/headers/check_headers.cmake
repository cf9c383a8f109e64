# cmake -P script behind the `public_headers` test: every public header (pccl.h, ccoip.h,
# ccoip_inet.h) compiles alone and in every order with the others, as strict C99 and as C++
# (-Wall -Wextra -pedantic -Werror), and each type and port macro is defined in one header only.
# Inputs: INCLUDE_DIR (include/), SOURCE_DIR (tests/headers/), WORK_DIR, C_COMPILER, CXX_COMPILER.
cmake_minimum_required(VERSION 3.20)

foreach(v INCLUDE_DIR SOURCE_DIR WORK_DIR C_COMPILER CXX_COMPILER)
  if(NOT DEFINED ${v} OR "${${v}}" STREQUAL "")
    message(FATAL_ERROR "public_headers: ${v} is not set")
  endif()
endforeach()
file(REMOVE_RECURSE "${WORK_DIR}")
file(MAKE_DIRECTORY "${WORK_DIR}")

# 1. One definition of each name.
file(GLOB headers "${INCLUDE_DIR}/*.h")
foreach(pattern "typedef enum ccoip_inet_protocol_t" "typedef struct ccoip_ipv4_address_t"
                "typedef struct ccoip_ipv6_address_t" "typedef struct ccoip_inet_address_t"
                "typedef struct ccoip_socket_address_t" "#define CCOIP_PROTOCOL_PORT_MASTER "
                "#define CCOIP_PROTOCOL_PORT_SHARED_STATE " "#define CCOIP_PROTOCOL_PORT_P2P "
                "#define CCOIP_PROTOCOL_PORT_BANDWIDTH_BENCHMARK " "typedef struct pcclRankInfo_t ")
  set(found 0)
  foreach(h IN LISTS headers)
    file(STRINGS "${h}" lines REGEX "^${pattern}")
    list(LENGTH lines n)
    math(EXPR found "${found} + ${n}")
  endforeach()
  if(NOT found EQUAL 1)
    message(FATAL_ERROR "public_headers: '${pattern}' is defined ${found} times in ${INCLUDE_DIR} (want 1)")
  endif()
endforeach()

# 2. Translation units: each header alone, and all three in each of the six orders (which
#    covers every pair in both orders). Each uses the names of every header it includes.
set(orders "pccl" "ccoip" "ccoip_inet"
           "pccl ccoip ccoip_inet" "pccl ccoip_inet ccoip" "ccoip pccl ccoip_inet"
           "ccoip ccoip_inet pccl" "ccoip_inet pccl ccoip" "ccoip_inet ccoip pccl")
set(compilers
  "c99|${C_COMPILER}|-std=c99|c"
  "c11|${C_COMPILER}|-std=c11|c"
  "cxx11|${CXX_COMPILER}|-std=c++11|cpp"
  "cxx20|${CXX_COMPILER}|-std=c++20|cpp")
set(i 0)
foreach(order IN LISTS orders)
  separate_arguments(names UNIX_COMMAND "${order}")
  set(tu "/* public_headers: ${order} */\n")
  set(body "")
  set(calls "")
  foreach(name IN LISTS names)
    string(APPEND tu "#include <${name}.h>\n")
    string(APPEND body "#include \"${SOURCE_DIR}/use_${name}.inc\"\n")
    string(APPEND calls " + use_${name}()")
  endforeach()
  string(APPEND tu "${body}int main(void) {\n    (void)(0${calls});\n    return 0;\n}\n")
  foreach(entry IN LISTS compilers)
    string(REPLACE "|" ";" parts "${entry}")
    list(GET parts 0 label)
    list(GET parts 1 compiler)
    list(GET parts 2 std)
    list(GET parts 3 ext)
    set(file "${WORK_DIR}/tu${i}_${label}.${ext}")
    file(WRITE "${file}" "${tu}")
    execute_process(COMMAND "${compiler}" ${std} -pedantic -Wall -Wextra -Werror -fsyntax-only
                            "-I${INCLUDE_DIR}" "${file}"
                    RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
    if(NOT rc EQUAL 0)
      message(FATAL_ERROR "public_headers: ${label} fails to compile the headers in the order [${order}] "
                          "(${file}):\n${out}${err}")
    endif()
  endforeach()
  math(EXPR i "${i} + 1")
endforeach()
message(STATUS "public_headers: ${i} header orders compile as C99, C11, C++11 and C++20")
