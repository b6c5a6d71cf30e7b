# `hwyquant serve` (job server) and the --progress-json protocol: the hwyquant_serve library.
find_package(PkgConfig REQUIRED)
pkg_check_modules(HWYQUANT_HTTPLIB REQUIRED IMPORTED_TARGET cpp-httplib)
pkg_check_modules(HWYQUANT_SQLITE3 REQUIRED IMPORTED_TARGET sqlite3)
find_package(nlohmann_json REQUIRED)
find_package(CLI11 REQUIRED)
find_package(Threads REQUIRED)

# The JSON-lines progress writer/parser: the CLI commands link it for --progress-json.
add_library(hwyquant_progress_json STATIC ${CMAKE_CURRENT_LIST_DIR}/progress_json.cc)
target_include_directories(hwyquant_progress_json PUBLIC ${PROJECT_SOURCE_DIR})
target_link_libraries(hwyquant_progress_json
  PUBLIC hwyquant_kernels nlohmann_json::nlohmann_json Threads::Threads)

add_library(hwyquant_serve STATIC
  ${CMAKE_CURRENT_LIST_DIR}/jobs.cc
  ${CMAKE_CURRENT_LIST_DIR}/server.cc)
target_include_directories(hwyquant_serve PUBLIC ${PROJECT_SOURCE_DIR})
target_link_libraries(hwyquant_serve
  PUBLIC hwyquant_progress_json hwyquant_kernels nlohmann_json::nlohmann_json
  PRIVATE PkgConfig::HWYQUANT_HTTPLIB PkgConfig::HWYQUANT_SQLITE3 CLI11::CLI11 Threads::Threads)
